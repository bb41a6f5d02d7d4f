-- The operator's mode for the call ('enforce', 'observe', 'skip'), and where
-- secrets were masked in response_json before it was stored.
ALTER TABLE governance_events
    ADD COLUMN mode text NOT NULL DEFAULT 'enforce',
    ADD COLUMN redacted_paths jsonb NOT NULL DEFAULT '[]';
