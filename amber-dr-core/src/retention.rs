//! Retention: which backups `prune` keeps.
//!
//! The policy is restic's: walking from the newest backup to the oldest, `keep_last` keeps the
//! N newest; `keep_daily` keeps the newest backup of each of the N most recent days that have
//! one; likewise `keep_weekly` (ISO weeks) and `keep_monthly`. A backup kept by any rule is
//! kept. Only complete backups count; whole backups are deleted, never parts of one.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// Maps a backup time to its day, week or month.
type Bucket = fn(&DateTime<Utc>) -> (i32, u32);

/// How many backups to keep per rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// The N newest.
    pub keep_last: usize,
    /// The newest of each of the last N days with a backup.
    pub keep_daily: usize,
    /// The newest of each of the last N ISO weeks with a backup.
    pub keep_weekly: usize,
    /// The newest of each of the last N months with a backup.
    pub keep_monthly: usize,
}

impl RetentionPolicy {
    /// True if no rule keeps anything (such a policy would delete every backup).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
    }

    /// Given `(id, time)` of complete backups, return the ids to keep.
    pub fn select(&self, backups: &[(String, DateTime<Utc>)]) -> BTreeSet<String> {
        let mut sorted: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut keep = BTreeSet::new();
        for (id, _) in sorted.iter().take(self.keep_last) {
            keep.insert(id.clone());
        }
        let rules: [(usize, Bucket); 3] = [
            (self.keep_daily, |t| (t.year(), t.ordinal())),
            (self.keep_weekly, |t| {
                let w = t.iso_week();
                (w.year(), w.week())
            }),
            (self.keep_monthly, |t| (t.year(), t.month())),
        ];
        for (n, bucket) in rules {
            let mut last = None;
            let mut count = 0;
            for (id, t) in &sorted {
                if count >= n {
                    break;
                }
                let b = bucket(t);
                if last != Some(b) {
                    keep.insert(id.clone());
                    last = Some(b);
                    count += 1;
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> (String, DateTime<Utc>) {
        let t = Utc
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid date");
        (t.format("%Y%m%d_%H%M%S").to_string(), t)
    }

    #[test]
    fn keep_last() {
        let b = vec![at(2026, 1, 1, 0), at(2026, 1, 2, 0), at(2026, 1, 3, 0)];
        let keep = RetentionPolicy {
            keep_last: 2,
            ..Default::default()
        }
        .select(&b);
        assert_eq!(keep.len(), 2);
        assert!(keep.contains(&b[2].0) && keep.contains(&b[1].0));
    }

    #[test]
    fn keep_daily_takes_newest_of_each_day() {
        let b = vec![
            at(2026, 3, 1, 1),
            at(2026, 3, 1, 23),
            at(2026, 3, 2, 5),
            at(2026, 3, 2, 6),
            at(2026, 3, 4, 0),
        ];
        let keep = RetentionPolicy {
            keep_daily: 3,
            ..Default::default()
        }
        .select(&b);
        let expect: BTreeSet<String> = [&b[4].0, &b[3].0, &b[1].0].into_iter().cloned().collect();
        assert_eq!(keep, expect);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks_across_year_end() {
        // 2026-12-31 (Thu) and 2027-01-01 (Fri) are both in ISO week 53 of 2026.
        let b = vec![
            at(2026, 12, 28, 0),
            at(2026, 12, 31, 0),
            at(2027, 1, 1, 0),
            at(2027, 1, 4, 0),
        ];
        let keep = RetentionPolicy {
            keep_weekly: 2,
            ..Default::default()
        }
        .select(&b);
        let expect: BTreeSet<String> = [&b[3].0, &b[2].0].into_iter().cloned().collect();
        assert_eq!(keep, expect);
    }

    #[test]
    fn keep_monthly_and_rules_combine() {
        let b = vec![
            at(2025, 11, 30, 0),
            at(2025, 12, 1, 0),
            at(2025, 12, 31, 0),
            at(2026, 1, 15, 0),
            at(2026, 1, 16, 0),
        ];
        let keep = RetentionPolicy {
            keep_last: 1,
            keep_monthly: 3,
            ..Default::default()
        }
        .select(&b);
        let expect: BTreeSet<String> = [&b[4].0, &b[2].0, &b[0].0].into_iter().cloned().collect();
        assert_eq!(keep, expect);
    }

    #[test]
    fn empty_policy_keeps_nothing_and_says_so() {
        let p = RetentionPolicy::default();
        assert!(p.is_empty());
        assert!(p.select(&[at(2026, 1, 1, 0)]).is_empty());
    }
}
