-- The invoice example of Kernite's "evidence sink: Postgres" integration.
CREATE TABLE IF NOT EXISTS invoices (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL
);
