//! Fuzzes the SQL entry point as `POST /v1/api/sql` drives it: split, classify, bound,
//! authorize, plan and run, for any authenticated user. No input may panic (a panic here is
//! a server task lost), hang past libFuzzer's `-timeout`, or let user `bob` change what
//! user `alice` sees of her own rows.
//! Run: `cd bin/fuzz && cargo fuzz run -s none sql` (see README, "Development").

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

/// What alice sees of her rows of the USER table.
const ALICES_ROWS: &str = "SELECT id, note, n FROM fz.u ORDER BY id";

fuzz_target!(|data: &[u8]| {
    let Some((&who, text)) = data.split_first() else {
        return;
    };
    let fx = common::fixture();
    let caller = common::caller(who);
    let sql = String::from_utf8_lossy(text);
    let alice = common::caller(0);
    let before = (caller.user == "bob").then(|| fx.run(&alice, ALICES_ROWS));
    if let Err(e) = fx.run(&caller, &sql) {
        assert!(!e.ends_with(": "), "an error without a message: {e}");
    }
    if let Some(before) = before {
        assert_eq!(
            before,
            fx.run(&alice, ALICES_ROWS),
            "bob's statement changed alice's rows: {sql:?}"
        );
    }
    let upper = sql.to_ascii_uppercase();
    if ["DROP", "ALTER", "CLEAR", "DELETE", "UPDATE"]
        .iter()
        .any(|w| upper.contains(w))
    {
        fx.restore();
    }
});
