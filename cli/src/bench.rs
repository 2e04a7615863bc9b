//! `persona bench <scenario>`: measured scenarios over generated data of a stated
//! size. Each prints throughput, memory and its parameters; `--json` prints one object
//! with `scenario`, `ops_per_sec`, `cores_used`, `peak_rss_bytes` and `params`.
//! Throughput is the median of `--runs` runs, since the machines are shared and noisy.

pub(crate) mod dsl;
pub(crate) mod e2e;
pub(crate) mod features;
pub(crate) mod grpc;
pub(crate) mod passivation;
pub(crate) mod vault;

use serde::Serialize;

/// Resident set size now, and its peak, in bytes (Linux `/proc/self/status`).
pub(crate) fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The median of measurements.
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of measurements, nearest rank.
pub(crate) fn percentile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// The throughput line of a report: the median and every run.
pub(crate) fn median_line(f: &mut std::fmt::Formatter<'_>, what: &str, median: f64, runs: &[f64]) -> std::fmt::Result {
    let runs: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    writeln!(
        f,
        "  {:<28} {median:>12.0}   runs: {}",
        format!("{what} (median)"),
        runs.join(", ")
    )
}

/// Prints a report as a table or as one JSON object.
pub(crate) fn print<T: Serialize + std::fmt::Display>(report: &T, json: bool) {
    if json {
        println!("{}", serde_json::to_string(report).expect("report serializes"));
    } else {
        println!("{report}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&mut xs, 0.5), 50.0);
        assert_eq!(super::percentile(&mut xs, 0.99), 99.0);
        assert_eq!(super::percentile(&mut [7.0], 0.99), 7.0);
    }
}
