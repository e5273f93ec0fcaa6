//! `/metrics` read as a Prometheus server reads it: the page parsed by a text-format parser
//! (`nom-openmetrics`, which fails on anything it cannot parse), then samples looked up by name
//! and labels. Waits poll the page until a condition holds, with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nom_openmetrics::{MetricDescriptor, MetricType};

use crate::helpers::DEADLINE;

/// One sample line: `name{labels} value`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug)]
pub struct Scrape {
    /// Each family's type (`counter`, `gauge`, `histogram`), from its `# TYPE` line.
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses a page in the Prometheus text format; a page that does not parse fails the test.
    pub fn parse(text: &str) -> Scrape {
        // The format allows blank lines between families; the parser does not take them.
        let text: String = text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{l}\n")).collect();
        let families = match nom_openmetrics::parser::prometheus(&text) {
            Ok((_, families)) => families,
            Err(e) => panic!("/metrics is not in the Prometheus text format: {e}\n{text}"),
        };
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for family in families {
            for d in &family.descriptors {
                if let MetricDescriptor::Type { metric, r#type } = d {
                    let kind = match r#type {
                        MetricType::Counter => "counter",
                        MetricType::Gauge => "gauge",
                        MetricType::Histogram => "histogram",
                        MetricType::Summary => "summary",
                        // The parser (0.3) returns `histogram` as a type it does not know.
                        MetricType::Unknown(other) => other,
                        _ => "other",
                    };
                    types.insert((*metric).to_owned(), kind.trim().to_owned());
                }
            }
            samples.extend(family.samples.iter().map(|s| Sample {
                name: s.name().to_owned(),
                labels: s.labels().iter().map(|l| (l.name.to_owned(), l.value.clone())).collect(),
                value: s.number(),
            }));
        }
        Scrape { types, samples }
    }

    /// GETs `url` and parses it.
    pub async fn get(url: &str) -> Scrape {
        let r = reqwest::get(url).await.expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET {url}");
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Scrape::parse(&r.text().await.expect("body"))
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples `matching` (0 when there are none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The number of observations of a histogram's series (its `_count`).
    pub fn count(&self, histogram: &str, labels: &[(&str, &str)]) -> f64 {
        assert_eq!(self.types.get(histogram).map(String::as_str), Some("histogram"), "{histogram} is a histogram");
        self.sum(&format!("{histogram}_count"), labels)
    }

    /// The values of label `label` among the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.matching(name, &[]).filter_map(|s| s.labels.get(label).cloned()).collect()
    }
}

/// Scrapes `url` until `done` holds, and returns that scrape; fails at the deadline with the
/// last one.
pub async fn until(url: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let scrape = Scrape::get(url).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {DEADLINE:?}; last scrape:\n{scrape:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
