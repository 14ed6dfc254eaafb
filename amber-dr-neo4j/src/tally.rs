//! What an export read: counts, an order-independent fingerprint, and the node ids seen, so
//! that relationships to nodes the export did not read (the graph changed while it was read)
//! are left out of a backup and counted, and found in a backup that holds them anyway.

use std::collections::{BTreeMap, BTreeSet};

use amber_dr_core::ComponentRecord;
use sha2::{Digest, Sha256};

use crate::value::{NodeRecord, RelRecord};
use crate::KIND;

/// Counts and an order-independent content fingerprint of a stream of records.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Tally {
    pub(crate) nodes: u64,
    pub(crate) rels: u64,
    by_label: BTreeMap<String, u64>,
    by_type: BTreeMap<String, u64>,
    node_sum: u128,
    rel_sum: u128,
    /// Ids of the nodes read (source export).
    ids: IdSet,
    /// Relationships the export left out: their start or end node was not read.
    pub(crate) left_out: u64,
    /// One of them: start id, type, end id.
    left_out_example: Option<(i64, String, i64)>,
    /// Entities the server returned twice in one scan, kept once (neo4j/neo4j#13741).
    pub(crate) read_twice: u64,
    /// Of a backup's artifacts read back ([`Tally::add_rel_of_backup`]): the share of the
    /// relationships that a restore leaves out in the counts and sums.
    skipped_by_type: BTreeMap<String, u64>,
    skipped_sum: u128,
}

fn line_hash(line: &[u8]) -> u128 {
    let d = Sha256::digest(line);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

impl Tally {
    pub(crate) fn add_node(&mut self, n: &NodeRecord, line: &[u8]) {
        self.nodes += 1;
        for l in &n.labels {
            *self.by_label.entry(l.clone()).or_default() += 1;
        }
        self.node_sum = self.node_sum.wrapping_add(line_hash(line));
        self.ids.insert(n.id);
    }
    pub(crate) fn add_rel(&mut self, r: &RelRecord, line: &[u8]) {
        self.rels += 1;
        *self.by_type.entry(r.typ.clone()).or_default() += 1;
        self.rel_sum = self.rel_sum.wrapping_add(line_hash(line));
    }
    /// A relationship of a backup's artifact, read after all its nodes: counted as read and,
    /// when its start or end node is not among them (a backup by an earlier version, which
    /// wrote such relationships), also as one a restore leaves out ([`Tally::restorable`]).
    pub(crate) fn add_rel_of_backup(&mut self, r: &RelRecord, line: &[u8]) {
        self.add_rel(r, line);
        if !(self.has_node(r.s) && self.has_node(r.e)) {
            self.leave_out(r);
            *self.skipped_by_type.entry(r.typ.clone()).or_default() += 1;
            self.skipped_sum = self.skipped_sum.wrapping_add(line_hash(line));
        }
    }
    /// What a restore creates from the artifacts counted by [`Tally::add_rel_of_backup`]: the
    /// counts and fingerprint without the relationships it leaves out.
    pub(crate) fn restorable(&self) -> Tally {
        let mut t = self.clone();
        t.rels -= t.left_out;
        t.rel_sum = t.rel_sum.wrapping_sub(t.skipped_sum);
        for (typ, n) in std::mem::take(&mut t.skipped_by_type) {
            if let Some(c) = t.by_type.get_mut(&typ) {
                *c -= n;
                if *c == 0 {
                    t.by_type.remove(&typ);
                }
            }
        }
        t.skipped_sum = 0;
        t.left_out = 0;
        t.left_out_example = None;
        t
    }
    /// Whether the node `id` was read.
    pub(crate) fn has_node(&self, id: i64) -> bool {
        self.ids.contains(id)
    }
    /// Count `r` as left out (see [`Tally::left_out`]).
    pub(crate) fn leave_out(&mut self, r: &RelRecord) {
        self.left_out += 1;
        self.left_out_example
            .get_or_insert_with(|| (r.s, r.typ.clone(), r.e));
    }
    /// The warning for the relationships left out, if any.
    pub(crate) fn left_out_warning(&self, db: &str) -> Option<String> {
        let (s, t, e) = self.left_out_example.as_ref()?;
        Some(format!(
            "database `{db}` changed while it was read: {} relationship(s) left out of the backup because their start or end node was created or deleted during the export (e.g. ({s})-[:{t}]->({e})); everything else is complete and restores",
            self.left_out
        ))
    }
    /// The warning for entities the server returned twice in one scan, if any.
    pub(crate) fn read_twice_warning(&self, db: &str) -> Option<String> {
        (self.read_twice > 0).then(|| format!(
            "database `{db}`: the server returned {} node(s) or relationship(s) twice in one scan while the graph was written (a known Neo4j bug before 2026.03, neo4j/neo4j#13741); each was stored once. The same bug can make a scan miss a relationship created during the backup: see the neo4j driver's README",
            self.read_twice
        ))
    }
    /// Add the counts and sums of `other`.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.nodes += other.nodes;
        self.rels += other.rels;
        for (l, n) in other.by_label {
            *self.by_label.entry(l).or_default() += n;
        }
        for (t, n) in other.by_type {
            *self.by_type.entry(t).or_default() += n;
        }
        self.node_sum = self.node_sum.wrapping_add(other.node_sum);
        self.rel_sum = self.rel_sum.wrapping_add(other.rel_sum);
        self.ids.union(other.ids);
        self.left_out += other.left_out;
        self.read_twice += other.read_twice;
        if self.left_out_example.is_none() {
            self.left_out_example = other.left_out_example;
        }
    }

    /// The fingerprint: counts and the wrapping sums of every record's SHA-256 (so the order
    /// of the records does not matter, duplicates do).
    pub(crate) fn fingerprint(&self) -> String {
        format!(
            "n{}:{:032x}/r{}:{:032x}",
            self.nodes, self.node_sum, self.rels, self.rel_sum
        )
    }
    pub(crate) fn write_stats(&self, rec: &mut ComponentRecord) {
        rec.set_stat("nodes", self.nodes);
        rec.set_stat("relationships", self.rels);
        for (l, n) in &self.by_label {
            rec.set_stat(format!("nodes.label.{l}"), n);
        }
        for (t, n) in &self.by_type {
            rec.set_stat(format!("relationships.type.{t}"), n);
        }
        rec.set_stat("fingerprint", self.fingerprint());
    }
    /// The record's stats of a backup: [`Tally::write_stats`] and `relationships.left_out`.
    pub(crate) fn write_backup_stats(&self, rec: &mut ComponentRecord) {
        self.write_stats(rec);
        rec.set_stat("relationships.left_out", self.left_out);
    }
    /// Differences from the counts and fingerprint of `other`, in words.
    pub(crate) fn differences_from(&self, other: &Tally) -> Vec<String> {
        let mut rec = ComponentRecord::new(KIND, "x");
        other.write_stats(&mut rec);
        self.differences(&rec)
    }
    /// Differences from the counts and fingerprint of `rec`, in words.
    pub(crate) fn differences(&self, rec: &ComponentRecord) -> Vec<String> {
        let mut out = Vec::new();
        let mut expect = ComponentRecord::new(KIND, "x");
        self.write_stats(&mut expect);
        let keys: std::collections::BTreeSet<&String> = rec
            .stats
            .keys()
            .chain(expect.stats.keys())
            .filter(|k| {
                k.as_str() == "nodes"
                    || k.as_str() == "relationships"
                    || k.as_str() == "fingerprint"
                    || k.starts_with("nodes.label.")
                    || k.starts_with("relationships.type.")
            })
            .collect();
        for k in keys {
            let (a, b) = (rec.stats.get(k), expect.stats.get(k));
            if a != b {
                out.push(format!(
                    "{k}: backup has {}, found {}",
                    a.map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
                    b.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
                ));
            }
        }
        out
    }
}

/// Largest id kept in the bitmap (ids of Neo4j's store are small, dense integers: a graph of
/// 100 million nodes needs 12.5 MB); others go to an ordered set.
const BITMAP_IDS: i64 = 1 << 32;

/// A set of node ids: a bitmap, and an ordered set for ids outside it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct IdSet {
    words: Vec<u64>,
    other: BTreeSet<i64>,
}

impl IdSet {
    pub(crate) fn insert(&mut self, id: i64) {
        if (0..BITMAP_IDS).contains(&id) {
            let (w, b) = ((id / 64) as usize, id % 64);
            if self.words.len() <= w {
                self.words.resize(w + 1, 0);
            }
            self.words[w] |= 1 << b;
        } else {
            self.other.insert(id);
        }
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        if (0..BITMAP_IDS).contains(&id) {
            let (w, b) = ((id / 64) as usize, id % 64);
            self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
        } else {
            self.other.contains(&id)
        }
    }

    pub(crate) fn union(&mut self, other: IdSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(other.words) {
            *a |= b;
        }
        self.other.extend(other.other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets() {
        let (mut a, mut b) = (IdSet::default(), IdSet::default());
        for id in [0, 5, 64, -3] {
            a.insert(id);
        }
        for id in [1000, 1 << 40] {
            b.insert(id);
        }
        a.union(b);
        for id in [0, 5, 64, -3, 1000, 1 << 40] {
            assert!(a.contains(id), "{id}");
        }
        for id in [1, 63, 65, 999, -4, (1 << 40) + 1, 1 << 33] {
            assert!(!a.contains(id), "{id}");
        }
    }
}
