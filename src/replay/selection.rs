//! Which rows a replay reads, and reading them: through a cursor, a page at
//! a time, on the one read-only snapshot [`super::run`] opens, so writers
//! are never blocked and rows committed meanwhile are not half-seen.
//!
//! The cursor has no ORDER BY: over most of the table PostgreSQL reads it
//! sequentially, through a small ring of buffers of its own, rather than
//! page by page through the id index into the shared buffers, where a
//! replay of a large table would push out the pages the writes beside it
//! need. Rows come in the table's order, which is close to id order.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::evidence::EvidenceError;
use crate::vocabulary::{Mode, RecordedDecision};

/// The cursor [`Selection::open`] declares.
const CURSOR: &str = "governance_replay_rows";

/// Rows per page at most: enough that a round trip is a small part of a
/// page's work.
const PAGE_ROWS: usize = 2_000;
/// The first page's rows, before the rows' size is known.
const FIRST_PAGE_ROWS: usize = 256;
/// About how many bytes of requests a page holds: pages of large requests
/// hold fewer rows, so that the few pages in flight stay a few megabytes
/// (a row's request may be as large as `--max-recorded-request-bytes`).
const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The rows to replay; every field narrows the selection.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub workspace_id: Option<String>,
    /// Rows created at or after this, in microseconds since the Unix epoch.
    pub since_micros: Option<i64>,
    /// Rows created before this.
    pub until_micros: Option<i64>,
    /// Stored (normalised) scope names.
    pub object_type: Option<String>,
    pub operation: Option<String>,
    /// At most this many rows, drawn uniformly at random from the selection.
    pub sample: Option<u64>,
    /// The sample's seed: the same seed over the same rows draws the same sample.
    pub seed: u64,
}

/// One evidence row as replay reads it, by column name.
#[derive(Debug, Clone)]
pub struct RecordedRow {
    pub id: i64,
    pub created_at_micros: i64,
    pub workspace_id: String,
    pub object_type: String,
    pub operation: String,
    pub decision: RecordedDecision,
    pub mode: Mode,
    pub reason_codes: Vec<String>,
    pub trace_hash: String,
    pub policy_bundle_sha256: Option<String>,
    pub request_json: Option<String>,
    pub request_redacted_paths: Vec<String>,
}

const COLUMNS: &str = "e.id, (extract(epoch FROM e.created_at) * 1000000)::bigint AS created_at_micros, \
     e.workspace_id, e.object_type, e.operation, e.decision, e.mode, e.reason_codes::text AS reason_codes, \
     e.trace_hash, e.policy_bundle_sha256, e.request_json, \
     e.request_redacted_paths::text AS request_redacted_paths";

impl RecordedRow {
    fn read(row: &Row) -> Result<RecordedRow, EvidenceError> {
        let id: i64 = row.try_get("id")?;
        let known = |word| EvidenceError::UnknownStoredWord { evidence_id: id, word };
        // A JSON array of strings, most often empty.
        let strings = |column: &str| -> Result<Vec<String>, EvidenceError> {
            let text: Option<&str> = row.try_get(column)?;
            Ok(text.filter(|text| *text != "[]").and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default())
        };
        Ok(RecordedRow {
            id,
            created_at_micros: row.try_get("created_at_micros")?,
            workspace_id: row.try_get("workspace_id")?,
            object_type: row.try_get("object_type")?,
            operation: row.try_get("operation")?,
            decision: row.try_get::<_, &str>("decision")?.parse().map_err(known)?,
            mode: row.try_get::<_, &str>("mode")?.parse().map_err(known)?,
            reason_codes: strings("reason_codes")?,
            trace_hash: row.try_get("trace_hash")?,
            policy_bundle_sha256: row.try_get("policy_bundle_sha256")?,
            request_json: row.try_get("request_json")?,
            request_redacted_paths: strings("request_redacted_paths")?,
        })
    }
}

/// The selection's conditions (each ` AND …`) and their parameters,
/// numbered after the query's own.
struct Conditions<'s> {
    sql: String,
    params: Vec<&'s (dyn ToSql + Sync)>,
}

impl Selection {
    /// The conditions, their parameters numbered after `own` of the query's.
    fn conditions(&self, own: usize) -> Conditions<'_> {
        let micros = "'epoch'::timestamptz + $::bigint * interval '1 microsecond'";
        let mut filters: Vec<(String, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(workspace) = &self.workspace_id {
            filters.push(("e.workspace_id = $".to_owned(), workspace));
        }
        if let Some(since) = &self.since_micros {
            filters.push((format!("e.created_at >= {micros}"), since));
        }
        if let Some(until) = &self.until_micros {
            filters.push((format!("e.created_at < {micros}"), until));
        }
        for (column, value) in [("object_type", &self.object_type), ("operation", &self.operation)] {
            if let Some(value) = value {
                filters.push((format!("e.{column} = $"), value));
            }
        }
        let mut sql = String::new();
        let mut params = Vec::new();
        for (condition, value) in filters {
            params.push(value);
            sql.push_str(" AND ");
            sql.push_str(&condition.replace('$', &format!("${}", own + params.len())));
        }
        Conditions { sql, params }
    }

    /// Starts reading, in the open transaction: draws the sample, or
    /// declares the cursor over the whole selection.
    pub async fn start(&self, client: &Client) -> Result<Reading, EvidenceError> {
        let source = match self.sample {
            Some(size) => Source::Sample { ids: self.sample_ids(client, size).await?, next: 0 },
            None => {
                self.declare_cursor(client).await?;
                Source::Cursor
            }
        };
        Ok(Reading { source, rows_per_page: FIRST_PAGE_ROWS })
    }

    /// Declares the cursor over the whole selection.
    async fn declare_cursor(&self, client: &Client) -> Result<(), EvidenceError> {
        let conditions = self.conditions(0);
        let sql = format!(
            "DECLARE {CURSOR} NO SCROLL CURSOR FOR SELECT {COLUMNS} FROM governance_events e WHERE TRUE{}",
            conditions.sql
        );
        client.execute(&sql, &conditions.params).await?;
        Ok(())
    }

    /// The rows of `ids` (a page of a sample), in id order.
    async fn rows_of(&self, client: &Client, ids: &[i64]) -> Result<Vec<RecordedRow>, EvidenceError> {
        let conditions = self.conditions(1);
        let sql =
            format!("SELECT {COLUMNS} FROM governance_events e WHERE e.id = ANY($1){} ORDER BY e.id", conditions.sql);
        let params: Vec<&(dyn ToSql + Sync)> = std::iter::once(&ids as _).chain(conditions.params).collect();
        client.query(&sql, &params).await?.iter().map(RecordedRow::read).collect()
    }

    /// A uniform sample of `size` ids of the selection, sorted: reservoir
    /// sampling over the selection's ids, read as a stream.
    async fn sample_ids(&self, client: &Client, size: u64) -> Result<Vec<i64>, EvidenceError> {
        use futures_util::TryStreamExt as _;
        let conditions = self.conditions(0);
        let sql = format!("SELECT e.id FROM governance_events e WHERE TRUE{}", conditions.sql);
        let rows = client.query_raw(&sql, conditions.params).await?;
        futures_util::pin_mut!(rows);
        let mut reservoir = Reservoir::new(size as usize, self.seed);
        while let Some(row) = rows.try_next().await? {
            reservoir.offer(row.try_get::<_, i64>("id")?);
        }
        let mut ids = reservoir.items;
        ids.sort_unstable();
        Ok(ids)
    }
}

/// A selection being read, a page at a time, each page sized by the last.
pub struct Reading {
    source: Source,
    rows_per_page: usize,
}

enum Source {
    /// Through the cursor [`Selection::start`] declared.
    Cursor,
    /// A sample's ids, sorted, and where the next page starts.
    Sample { ids: Vec<i64>, next: usize },
}

impl Reading {
    /// The sample's size; `None` for a whole selection (not counted first).
    pub fn sample_size(&self) -> Option<u64> {
        match &self.source {
            Source::Cursor => None,
            Source::Sample { ids, .. } => Some(ids.len() as u64),
        }
    }

    /// The next page of rows; empty at the end.
    pub async fn next_page(
        &mut self,
        selection: &Selection,
        client: &Client,
    ) -> Result<Vec<RecordedRow>, EvidenceError> {
        let rows = match &mut self.source {
            Source::Cursor => {
                let rows = client.query(&format!("FETCH {} FROM {CURSOR}", self.rows_per_page), &[]).await?;
                rows.iter().map(RecordedRow::read).collect::<Result<Vec<_>, _>>()?
            }
            Source::Sample { ids, next } => {
                let page = &ids[*next..ids.len().min(*next + self.rows_per_page)];
                *next += page.len();
                match page {
                    [] => Vec::new(),
                    page => selection.rows_of(client, page).await?,
                }
            }
        };
        self.rows_per_page = rows_fitting(&rows);
        Ok(rows)
    }
}

/// How many rows like `page`'s the next page may hold: [`PAGE_BYTES`] of
/// them, between 16 and [`PAGE_ROWS`].
fn rows_fitting(page: &[RecordedRow]) -> usize {
    let bytes: usize = page.iter().map(|row| row.request_json.as_ref().map_or(0, String::len) + 256).sum();
    match page.len() {
        0 => FIRST_PAGE_ROWS,
        rows => (PAGE_BYTES / (bytes / rows).max(1)).clamp(16, PAGE_ROWS),
    }
}

/// Algorithm R: after `n` offers, each has been kept with probability `size / n`.
struct Reservoir {
    items: Vec<i64>,
    size: usize,
    seen: u64,
    random: SplitMix64,
}

impl Reservoir {
    fn new(size: usize, seed: u64) -> Reservoir {
        Reservoir { items: Vec::with_capacity(size.min(1 << 20)), size, seen: 0, random: SplitMix64(seed) }
    }

    fn offer(&mut self, item: i64) {
        self.seen += 1;
        if self.items.len() < self.size {
            self.items.push(item);
        } else {
            let slot = self.random.below(self.seen);
            if slot < self.size as u64 {
                self.items[slot as usize] = item;
            }
        }
    }
}

/// SplitMix64: a small, well-mixed generator; a sample need not be secret,
/// only uniform and reproducible from its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-40 for any sample here).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_large_requests_hold_fewer_rows() {
        let row = |request_bytes: usize| RecordedRow {
            id: 1,
            created_at_micros: 0,
            workspace_id: String::new(),
            object_type: String::new(),
            operation: String::new(),
            decision: RecordedDecision::Approved,
            mode: Mode::Enforce,
            reason_codes: Vec::new(),
            trace_hash: String::new(),
            policy_bundle_sha256: None,
            request_json: Some("x".repeat(request_bytes)),
            request_redacted_paths: Vec::new(),
        };
        assert_eq!(rows_fitting(&[]), FIRST_PAGE_ROWS);
        assert_eq!(rows_fitting(&vec![row(1_000); 10]), PAGE_ROWS, "small requests: a whole page");
        assert_eq!(rows_fitting(&vec![row(64 * 1024); 10]), PAGE_BYTES / (64 * 1024 + 256));
        assert_eq!(rows_fitting(&vec![row(16 << 20); 2]), 16, "never fewer than 16");
    }

    #[test]
    fn a_reservoir_keeps_every_item_when_the_sample_is_larger_than_the_selection() {
        let mut reservoir = Reservoir::new(10, 1);
        (1..=5).for_each(|i| reservoir.offer(i));
        assert_eq!(reservoir.items, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_reservoir_draws_uniformly_and_the_same_seed_draws_the_same_sample() {
        let draw = |seed| {
            let mut reservoir = Reservoir::new(100, seed);
            (0..10_000).for_each(|i| reservoir.offer(i));
            reservoir.items
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // Each of 10 deciles holds about a tenth of 200 draws of 100.
        let mut deciles = [0_u32; 10];
        for seed in 0..200 {
            for item in draw(seed) {
                deciles[(item / 1_000) as usize] += 1;
            }
        }
        assert!(deciles.iter().all(|&n| (1_700..2_300).contains(&n)), "{deciles:?}");
    }

    #[test]
    fn the_conditions_number_their_parameters_after_the_querys_own() {
        let selection = Selection {
            workspace_id: Some("w".into()),
            until_micros: Some(5),
            operation: Some("create".into()),
            ..Selection::default()
        };
        let conditions = selection.conditions(1);
        assert_eq!(
            conditions.sql,
            " AND e.workspace_id = $2 AND e.created_at < 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' \
             AND e.operation = $4"
        );
        assert_eq!(conditions.params.len(), 3);
    }
}
