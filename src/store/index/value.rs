//! What an entry is worth keeping, for `gc --policy value`: GreedyDual-Size-Frequency
//! (Cherkasova, 1998), the policy web caches adopted because evicting by recency alone throws
//! away a 10-minute link step as readily as a 5 ms `echo`.
//!
//! An entry's value is `L + F × C / S`, set each time it is used:
//! - `F`, its uses: the store and every hit since (`hits + 1`), plus the uses it had before gc
//!   last evicted it (`past_uses`: an entry every build uses keeps its worth when it is stored
//!   again, rather than starting from one and being evicted again at once);
//! - `C`, what one hit saves: the command's duration in ms;
//! - `S`, the bytes it takes in the cache (at least 1);
//! - `L`, the clock: the highest value gc has evicted so far (kept in `meta`). Values set later
//!   start from a higher clock, so an entry that stops being used falls behind the ones used
//!   since, however valuable it once was: that is the aging.
//!
//! gc evicts the lowest values first (ties: least recently used) and then moves the clock up to
//! the highest value it evicted.

use super::Index;
use anyhow::Result;

/// The `meta` row holding the clock `L`.
const CLOCK: &str = "gc_value_clock";

/// SQL: the clock, 0 before the first eviction.
macro_rules! clock_sql {
    () => {
        "COALESCE((SELECT CAST(meta.value AS REAL) FROM meta WHERE meta.name = 'gc_value_clock'), 0.0)"
    };
}

/// SQL: an entry row's value with `hits` as it stands (after a store, or a rebuild).
pub(super) const VALUE_NOW: &str = concat!(
    clock_sql!(),
    " + (hits + 1 + past_uses) * CAST(duration_ms AS REAL) / MAX(size_bytes, 1)"
);

/// SQL: an entry row's value after one more hit, read before `hits` is incremented (so in the
/// same `UPDATE` that increments it).
pub(super) const VALUE_AFTER_HIT: &str = concat!(
    clock_sql!(),
    " + (hits + 2 + past_uses) * CAST(duration_ms AS REAL) / MAX(size_bytes, 1)"
);

impl Index {
    /// Move the clock up to `to` (never down): gc calls it with the highest value it evicted.
    pub fn advance_value_clock(&self, to: f64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(name, value) VALUES(?1, ?2)
             ON CONFLICT(name) DO UPDATE SET
                value = MAX(CAST(meta.value AS REAL), CAST(excluded.value AS REAL))",
            rusqlite::params![CLOCK, to],
        )?;
        Ok(())
    }

    /// The clock (0 before the first eviction by value).
    pub fn value_clock(&self) -> Result<f64> {
        Ok(self
            .conn
            .query_row(concat!("SELECT ", clock_sql!()), [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_moves_up() {
        let idx = Index::empty().unwrap();
        assert_eq!(idx.value_clock().unwrap(), 0.0);
        idx.advance_value_clock(2.5).unwrap();
        idx.advance_value_clock(1.0).unwrap();
        assert_eq!(idx.value_clock().unwrap(), 2.5);
        idx.advance_value_clock(10.0).unwrap();
        assert_eq!(idx.value_clock().unwrap(), 10.0);
    }
}
