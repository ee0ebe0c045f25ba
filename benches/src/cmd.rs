//! The node's local HTTP API, as the benchmark drives it: through `datamesh_api::Client`,
//! the client the CLI uses.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use datamesh_api::{API_TOKEN_FILE, Client, RunFile};
use datamesh_core::FileId;

/// How long one call of the benchmark to a node's API may take.
const API_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of the node that published `run`, whose home is `home` (its token); calls
/// time out after two minutes.
///
/// # Errors
/// When the token cannot be read.
pub fn api_client(run: &RunFile, home: &Path) -> anyhow::Result<Client> {
    let token_path = home.join(API_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?;
    Ok(Client::new(run.api, &token).with_timeout(API_TIMEOUT))
}

/// `GET /v1/files/ID` through `client`: the whole file, in memory.
///
/// # Errors
/// A malformed id, transport errors, an error answer, or a short body.
pub fn get_bytes(client: &Client, id: &str) -> anyhow::Result<Vec<u8>> {
    let id: FileId = id
        .parse()
        .with_context(|| format!("{id} is not a file id"))?;
    let mut bytes = Vec::new();
    client.get(&id)?.copy_to(&mut bytes)?;
    Ok(bytes)
}

/// Sum and count of every histogram series a node exports (`GET /metrics`), keyed by the
/// histogram's name with its labels: `datamesh_put_stage_seconds{stage="stripes"}`.
///
/// # Errors
/// Transport errors or an error answer.
pub fn histograms(client: &Client) -> anyhow::Result<HashMap<String, (f64, f64)>> {
    Ok(parse_histograms(&client.metrics()?))
}

/// The `_sum` and `_count` lines of Prometheus text, paired by series; other lines and
/// lines that do not parse are skipped.
pub fn parse_histograms(text: &str) -> HashMap<String, (f64, f64)> {
    let mut out: HashMap<String, (f64, f64)> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_at(series.find('{').unwrap_or(series.len()));
        let (base, is_sum) = if let Some(base) = name.strip_suffix("_sum") {
            (base, true)
        } else if let Some(base) = name.strip_suffix("_count") {
            (base, false)
        } else {
            continue;
        };
        let entry = out.entry(format!("{base}{labels}")).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_and_counts_pair_by_series() {
        let text = "# HELP datamesh_put_stage_seconds Seconds\n\
            # TYPE datamesh_put_stage_seconds histogram\n\
            datamesh_put_stage_seconds_sum{stage=\"stripes\"} 0.5\n\
            datamesh_put_stage_seconds_count{stage=\"stripes\"} 4\n\
            datamesh_put_stage_seconds_bucket{le=\"0.001\",stage=\"stripes\"} 1\n\
            datamesh_placement_lookup_seconds_sum 0.25\n\
            datamesh_placement_lookup_seconds_count 10\n\
            datamesh_puts_total 4\n\
            broken_sum x\n";
        let h = parse_histograms(text);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(
            h.get("datamesh_put_stage_seconds{stage=\"stripes\"}"),
            Some(&(0.5, 4.0))
        );
        assert_eq!(
            h.get("datamesh_placement_lookup_seconds"),
            Some(&(0.25, 10.0))
        );
    }
}
