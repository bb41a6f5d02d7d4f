//! The two layouts of the evidence tables, chosen at migration time.
//!
//! - **reference** (the default): migration 0001's table, exactly Kernite's,
//!   with the sidecar's columns added. Keys are unique for ever.
//! - **partitioned** (`migrate --layout partitioned`): the same columns,
//!   partitioned by month, idempotency keys in a table of their own with a
//!   lifetime, and every key containing `workspace_id` so that Citus can
//!   distribute the tables (`migrations/layout_partitioned.sql`, `deploy/citus/`).
//!
//! The sidecar's statements are the same in both; what differs is answered
//! here (which layout a database has, and the conversion) and in `upkeep.rs`
//! (the partitioned layout's months and keys).

use tokio_postgres::Client;

use super::SchemaError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EvidenceLayout {
    #[default]
    Reference,
    Partitioned,
}

impl EvidenceLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceLayout::Reference => "reference",
            EvidenceLayout::Partitioned => "partitioned",
        }
    }
}

impl std::str::FromStr for EvidenceLayout {
    type Err = String;

    fn from_str(text: &str) -> Result<EvidenceLayout, String> {
        match text {
            "reference" => Ok(EvidenceLayout::Reference),
            "partitioned" => Ok(EvidenceLayout::Partitioned),
            other => Err(format!("no layout `{other}`: reference or partitioned")),
        }
    }
}

/// The conversion of a reference-layout schema, rows kept.
const TO_PARTITIONED: &str = include_str!("../../migrations/layout_partitioned.sql");

/// The layout of a migrated database: whether its evidence table is partitioned.
pub async fn detect(client: &Client) -> Result<EvidenceLayout, SchemaError> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('governance_events')), false) \
             AS partitioned",
            &[],
        )
        .await?;
    Ok(if row.try_get("partitioned")? { EvidenceLayout::Partitioned } else { EvidenceLayout::Reference })
}

/// Brings a database at the latest schema version to `wanted`: the reference
/// layout is converted to the partitioned one in one transaction (writers
/// wait while the rows are copied); there is no way back.
pub(super) async fn convert(client: &mut Client, wanted: EvidenceLayout) -> Result<(), SchemaError> {
    match (detect(client).await?, wanted) {
        (current, wanted) if current == wanted => Ok(()),
        (EvidenceLayout::Reference, EvidenceLayout::Partitioned) => {
            let transaction = client.transaction().await?;
            transaction.batch_execute(TO_PARTITIONED).await?;
            transaction.commit().await?;
            tracing::info!("converted the evidence tables to the partitioned layout");
            Ok(())
        }
        (EvidenceLayout::Partitioned, _) => Err(SchemaError::Incompatible(
            "the database is in the partitioned layout, which cannot be turned back into the reference layout".into(),
        )),
        (EvidenceLayout::Reference, EvidenceLayout::Reference) => unreachable!("equal layouts are handled first"),
    }
}
