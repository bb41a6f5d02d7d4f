//! Any bytes as a policy bundle file: it loads whole or is refused with a
//! reason, and a loaded bundle resolves any scope.
#![no_main]

use governance_sidecar::policies::PolicyBundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = PolicyBundle::parse(data) {
        for (object_type, operation) in [("invoice", "create"), ("", ""), ("x", "delete")] {
            let _ = bundle.resolve(object_type, operation);
        }
    }
});
