//! The guest benchmark program's output (guest-user/src/bin/bench.rs), parsed.

use super::stats::Stats;
use std::collections::BTreeMap;

/// One `row` line of the guest program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRow {
    pub id: String,
    pub name: String,
    pub stats: Stats,
    /// Per-iteration cycles (with `--raw`).
    pub samples: Vec<u64>,
}

/// Everything the guest program printed.
#[derive(Debug, Clone, Default)]
pub struct GuestOutput {
    pub header: String,
    pub rows: Vec<GuestRow>,
    /// (id, name, reason).
    pub skipped: Vec<(String, String, String)>,
    pub done: bool,
    /// Lines that are none of the above (kernel messages, errors).
    pub other: Vec<String>,
}

impl GuestOutput {
    pub fn row(&self, id: &str) -> Option<&GuestRow> {
        self.rows.iter().find(|r| r.id == id)
    }
}

/// Parse the guest program's output (see guest-user/src/bin/bench.rs).
pub fn parse_guest(text: &str) -> GuestOutput {
    let mut out = GuestOutput::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("row") => {
                let (Some(id), Some(name)) = (words.next(), words.next()) else {
                    out.other.push(line.into());
                    continue;
                };
                let mut kv: BTreeMap<&str, u64> = BTreeMap::new();
                for w in words {
                    if let Some((k, v)) = w.split_once('=') {
                        if let Ok(v) = v.parse() {
                            kv.insert(k, v);
                        }
                    }
                }
                let get = |k| kv.get(k).copied().unwrap_or(0);
                out.rows.push(GuestRow {
                    id: id.into(),
                    name: name.into(),
                    stats: Stats {
                        n: get("n"),
                        median: get("median"),
                        p10: get("p10"),
                        p90: get("p90"),
                        min: get("min"),
                        max: get("max"),
                    },
                    samples: Vec::new(),
                });
            }
            Some("samples") => {
                let id = words.next().unwrap_or("");
                let s: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                if let Some(r) = out.rows.iter_mut().rev().find(|r| r.id == id) {
                    r.samples = s;
                }
            }
            Some("skip") => {
                let id = words.next().unwrap_or("").to_string();
                let name = words.next().unwrap_or("").to_string();
                out.skipped.push((id, name, words.collect::<Vec<_>>().join(" ")));
            }
            // Row 5d's console writes.
            Some("fill") => {}
            Some("bench:") if line == "bench: done" => out.done = true,
            Some("bench:") if out.header.is_empty() => out.header = line["bench:".len()..].trim().into(),
            Some(_) => out.other.push(line.into()),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Stats;

    #[test]
    fn parses_guest_lines() {
        let out = parse_guest(
            "bench: iters=3 rdtscp=1 kernel=vmm-guest\n\
             row 2 getpid-syscall n=3 median=40 p10=39 p90=41 min=39 max=41\n\
             samples 2 39 40 41\n\
             skip 8 vdso-clock_gettime the guest kernel maps no vDSO\n\
             kernel: something\n\
             bench: done\n",
        );
        assert_eq!(out.header, "iters=3 rdtscp=1 kernel=vmm-guest");
        assert!(out.done);
        let r = out.row("2").unwrap();
        assert_eq!(r.name, "getpid-syscall");
        assert_eq!(
            r.stats,
            Stats {
                n: 3,
                median: 40,
                p10: 39,
                p90: 41,
                min: 39,
                max: 41
            }
        );
        assert_eq!(r.samples, vec![39, 40, 41]);
        assert_eq!(out.skipped[0].0, "8");
        assert_eq!(out.skipped[0].2, "the guest kernel maps no vDSO");
        assert_eq!(out.other, vec!["kernel: something".to_string()]);
    }

    #[test]
    fn malformed_lines_are_kept_not_lost() {
        let out = parse_guest(
            "row\n\
             row 1\n\
             row 2 getpid n=x median=40\n\
             samples 9 1 2 3\n\
             fill xxxxxxxx\n\
             \n\
             bench: second header line is not the header\n",
        );
        // A row without an id and a name is not a row.
        assert_eq!(out.other[..2], ["row".to_string(), "row 1".to_string()]);
        // Fields that are not numbers read as 0.
        let r = out.row("2").unwrap();
        assert_eq!((r.stats.n, r.stats.median), (0, 40));
        // Samples of a row never printed are dropped; fill lines and empty lines ignored.
        assert!(out.rows.iter().all(|r| r.samples.is_empty()));
        assert_eq!(out.header, "second header line is not the header");
        assert!(!out.done);
        assert_eq!(out.other.len(), 2);
    }

    #[test]
    fn samples_go_to_the_latest_row_with_that_id() {
        let out = parse_guest("row 1 a n=1\nrow 1 b n=2\nsamples 1 5 6\nbench: x\nbench: y\nbench: done\n");
        assert_eq!(out.rows[0].samples, Vec::<u64>::new());
        assert_eq!(out.rows[1].samples, vec![5, 6]);
        // The first `bench:` line is the header; later ones (but `done`) are other output.
        assert_eq!(out.header, "x");
        assert_eq!(out.other, vec!["bench: y".to_string()]);
        assert!(out.done);
        assert!(out.row("7").is_none());
    }

    #[test]
    fn a_skip_line_keeps_its_whole_reason() {
        let out = parse_guest("skip 5d console-write no   console here\nskip\n");
        assert_eq!(
            out.skipped,
            vec![
                ("5d".into(), "console-write".into(), "no console here".into()),
                (String::new(), String::new(), String::new())
            ]
        );
    }
}
