//! Kernite's random `ctx_id` for answers that have no `trace_hash` to derive
//! one from (a rejected request, a skipped evaluation): `ctx_` + 12 hex digits.

pub fn random() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("ctx_{}", &id[..12])
}
