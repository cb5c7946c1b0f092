//! The benchmark's scenarios: case construction (which documents are exemplars, queries,
//! never-registered layouts, perturbation bases and drift streams) and their evaluation
//! through the public engine API, exactly as the server calls it.

use std::collections::BTreeMap;

use preflight_engine::diagnostics;
use preflight_engine::{
    evaluate, validate, Decision, DriftDetectorState, DriftObservation, Evaluation,
    ExtractorMetadata, Policy, StructuralFeatures, Template, TemplateIndex,
};
use serde::Serialize;

use crate::data::{by_group, Doc};
use crate::metrics::{Dec, Outcome, StreamResult};
use crate::perturb::{perturb, LEVELS};
use crate::rng::SplitMix64;
use crate::split::{partition_of, withheld, Partition};

/// Size knobs of a run. `full()` is the reported benchmark; `small()` the fast test version.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub seed: u64,
    /// Perturbed variants per base document and level.
    pub variants_per_level: usize,
    /// Share of registrable groups withheld as never-registered layouts.
    pub withheld_share: f64,
    /// Stable documents per drift stream (including the detector's warm-up).
    pub stable_len: usize,
    /// Documents after a sudden change / over a gradual one.
    pub change_len: usize,
    /// At most this many groups get drift streams (all when `None`).
    pub max_stream_groups: Option<usize>,
    /// At most this many perturbation base groups per partition (all when `None`).
    pub max_perturb_groups: Option<usize>,
}

impl Config {
    pub fn full(seed: u64) -> Config {
        Config {
            seed,
            variants_per_level: 4,
            withheld_share: 0.25,
            stable_len: 600,
            change_len: 60,
            max_stream_groups: None,
            max_perturb_groups: None,
        }
    }
    pub fn small(seed: u64) -> Config {
        Config {
            seed,
            variants_per_level: 1,
            withheld_share: 0.25,
            stable_len: 150,
            change_len: 30,
            max_stream_groups: Some(6),
            max_perturb_groups: Some(60),
        }
    }
}

/// The detector's warm-up (no alarm possible), see `DriftDetectorState`.
pub const DETECTOR_WARMUP: usize = 30;

/// Role of a group in the real-group scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    pub group: String,
    pub partition: Partition,
    /// Indices (into the group's members) of the exemplars; empty = never registered.
    pub exemplars: Vec<usize>,
    /// Indices of held-out members evaluated as known documents.
    pub queries: Vec<usize>,
}

impl GroupPlan {
    pub fn registered(&self) -> bool {
        !self.exemplars.is_empty()
    }
}

/// Whether a group can be registered: SROIE issuers need ≥ 5 receipts (smaller ones are
/// mostly one-off shops and serve as never-seen layouts); the form sets need ≥ 3 documents
/// so at least one is held out.
pub fn registrable(source: &str, n: usize) -> bool {
    if source == "sroie" {
        n >= 5
    } else {
        n >= 3
    }
}

/// Exemplar count: 3 when the group has ≥ 6 documents, else 2.
pub fn exemplar_count(n: usize) -> usize {
    if n >= 6 {
        3
    } else {
        2
    }
}

/// Assigns every group its partition, exemplars (seeded choice) and queries.
pub fn plan(groups: &BTreeMap<&str, Vec<&Doc>>, cfg: &Config) -> Vec<GroupPlan> {
    plan_with(groups, cfg, exemplar_count)
}

/// [`plan`] with another exemplar count per group size (the one-exemplar protocol uses
/// `|_| 1`). The seeded shuffle is the same, so the one-exemplar plan's exemplar is the
/// first of the three-exemplar plan's, and the withheld groups are the same.
pub fn plan_with(
    groups: &BTreeMap<&str, Vec<&Doc>>,
    cfg: &Config,
    exemplars_for: impl Fn(usize) -> usize,
) -> Vec<GroupPlan> {
    groups
        .iter()
        .map(|(g, members)| {
            let partition = partition_of(g);
            let n = members.len();
            if !registrable(members[0].source, n) || withheld(cfg.seed, g, cfg.withheld_share) {
                return GroupPlan {
                    group: g.to_string(),
                    partition,
                    exemplars: vec![],
                    queries: vec![],
                };
            }
            let mut idx: Vec<usize> = (0..n).collect();
            SplitMix64::derive(cfg.seed, &format!("exemplars/{g}")).shuffle(&mut idx);
            let k = exemplars_for(n).clamp(1, n - 1);
            let mut exemplars = idx[..k].to_vec();
            let mut queries = idx[k..].to_vec();
            exemplars.sort_unstable();
            queries.sort_unstable();
            GroupPlan {
                group: g.to_string(),
                partition,
                exemplars,
                queries,
            }
        })
        .collect()
}

/// The baseline reliability of every benchmark template.
pub const BASELINE_RELIABILITY: f64 = 0.95;

/// A template a scenario registers, as plain data: its id (the group label) and its
/// exemplar layouts in registration order. Any front end of the engine (the library here,
/// the HTTP API in `crates/preflight/tests/quality_http.rs`) registers exactly this.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    /// The template id: the group label.
    pub group: String,
    pub exemplars: Vec<StructuralFeatures>,
}

impl TemplateSpec {
    /// The engine template with the given version and version id (the benchmark itself
    /// uses version 1 and `"<group>@1"`; a server assigns its own version ids).
    pub fn template(&self, version: i64, template_version_id: impl Into<String>) -> Template {
        Template::new(
            self.group.clone(),
            version,
            template_version_id,
            self.exemplars.clone(),
            BASELINE_RELIABILITY,
            vec![],
        )
        .expect("real exemplars are valid templates")
    }

    /// The template as the benchmark registers it: version 1, version id `"<group>@1"`.
    pub fn benchmark_template(&self) -> Template {
        self.template(1, format!("{}@1", self.group))
    }
}

/// One document a scenario evaluates, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub partition: Partition,
    pub source: &'static str,
    /// The group the document comes from (its drift is measured against this group's
    /// template when one is registered).
    pub group: String,
    /// The template it should be identified as; `None` for a never-registered layout.
    pub truth: Option<String>,
    /// Perturbation level (None for unperturbed real documents).
    pub level: Option<f64>,
    pub features: StructuralFeatures,
    pub extractor: ExtractorMetadata,
}

/// A scenario's templates (one index, in registration order) and its queries (in the
/// order the benchmark reports them).
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub templates: Vec<TemplateSpec>,
    pub queries: Vec<Query>,
}

fn dec(d: Decision) -> Dec {
    match d {
        Decision::Match => Dec::Match,
        Decision::Review => Dec::Review,
        Decision::New => Dec::New,
        Decision::Reject => Dec::Reject,
    }
}

/// The top-ranked template's group and confidence (for NEW: the closest template's).
fn best_of(e: &Evaluation) -> (Option<String>, f64) {
    match (&e.template_id, &e.runner_up) {
        (Some(t), _) => (Some(t.clone()), e.match_confidence),
        (None, Some(c)) => (Some(c.template_id.clone()), c.match_confidence),
        (None, None) => (None, 0.0),
    }
}

/// A labeled outcome with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub partition: Partition,
    pub source: &'static str,
    /// Perturbation level (None for unperturbed real documents).
    pub level: Option<f64>,
    pub outcome: Outcome,
}

/// Everything a run measured (raw, before aggregation).
#[derive(Debug, Clone, Serialize)]
pub struct RunData {
    pub real: Vec<Case>,
    pub perturbed: Vec<Case>,
    pub streams: Vec<(Partition, StreamResult)>,
    pub registered_templates: usize,
    pub perturbation_templates: usize,
}

/// Runs all scenarios.
pub fn run(docs: &[Doc], cfg: &Config, policy: &Policy) -> RunData {
    let groups = by_group(docs);
    let plans = plan(&groups, cfg);
    let (real, _, templates) = real_groups(&groups, &plans, policy);
    let (perturbed, perturbation_templates) = perturbation(&groups, &plans, cfg, policy);
    let streams = drift_streams(&groups, &plans, &templates, cfg);
    RunData {
        real,
        perturbed,
        streams,
        registered_templates: templates.len(),
        perturbation_templates,
    }
}

/// The real-group scenario as data: one template per registered group (its exemplars),
/// then the held-out members of registered groups (known) and every member of
/// never-registered groups (novel), in plan order.
pub fn real_group_scenario(groups: &BTreeMap<&str, Vec<&Doc>>, plans: &[GroupPlan]) -> Scenario {
    let templates = plans
        .iter()
        .filter(|p| p.registered())
        .map(|p| {
            let m = &groups[p.group.as_str()];
            TemplateSpec {
                group: p.group.clone(),
                exemplars: p.exemplars.iter().map(|&i| m[i].features.clone()).collect(),
            }
        })
        .collect();
    let mut queries = Vec::new();
    for p in plans {
        let m = &groups[p.group.as_str()];
        let members: Vec<usize> = if p.registered() {
            p.queries.clone()
        } else {
            (0..m.len()).collect()
        };
        for i in members {
            let d = m[i];
            queries.push(Query {
                partition: p.partition,
                source: d.source,
                group: p.group.clone(),
                truth: p.registered().then(|| p.group.clone()),
                level: None,
                features: d.features.clone(),
                extractor: d.extractor.clone(),
            });
        }
    }
    Scenario { templates, queries }
}

/// Builds a scenario's index (benchmark version ids) and evaluates its queries.
pub fn evaluate_scenario(
    s: &Scenario,
    policy: &Policy,
) -> (Vec<Case>, TemplateIndex, BTreeMap<String, Template>) {
    let mut index = TemplateIndex::new();
    let mut templates = BTreeMap::new();
    for spec in &s.templates {
        let t = spec.benchmark_template();
        templates.insert(spec.group.clone(), t.clone());
        index.insert(t);
    }
    let cases = s
        .queries
        .iter()
        .map(|q| {
            let v = validate(&q.features, &q.extractor).expect("benchmark documents validate");
            let e = evaluate(&index, &v, policy);
            let drift = templates
                .get(&q.group)
                .map_or(0.0, |t| diagnostics::drift(&v, t));
            let (best, confidence) = best_of(&e);
            Case {
                partition: q.partition,
                source: q.source,
                level: q.level,
                outcome: Outcome {
                    group: q.group.clone(),
                    truth: q.truth.clone(),
                    best,
                    decision: dec(e.decision),
                    drift,
                    confidence,
                },
            }
        })
        .collect();
    (cases, index, templates)
}

/// Registers each registered group's exemplars, then evaluates held-out members (known) and
/// every member of never-registered groups (novel) against the whole index.
pub fn real_groups(
    groups: &BTreeMap<&str, Vec<&Doc>>,
    plans: &[GroupPlan],
    policy: &Policy,
) -> (Vec<Case>, TemplateIndex, BTreeMap<String, Template>) {
    evaluate_scenario(&real_group_scenario(groups, plans), policy)
}

/// The perturbation scenario as data: one single-exemplar template per group (a seeded
/// base document), and seeded perturbed copies of the queried bases (all, or a seeded
/// subset per partition), sorted by partition.
pub fn perturbation_scenario(
    groups: &BTreeMap<&str, Vec<&Doc>>,
    plans: &[GroupPlan],
    cfg: &Config,
) -> Scenario {
    let mut bases: Vec<(&GroupPlan, &Doc)> = Vec::new();
    let mut per_partition: BTreeMap<Partition, usize> = BTreeMap::new();
    for p in plans {
        let m = &groups[p.group.as_str()];
        let base = m[SplitMix64::derive(cfg.seed, &format!("base/{}", p.group)).below(m.len())];
        bases.push((p, base));
    }
    let templates = bases
        .iter()
        .map(|(p, d)| TemplateSpec {
            group: p.group.clone(),
            exemplars: vec![d.features.clone()],
        })
        .collect();
    // Which bases are queried: all, or a seeded subset per partition for the small run (the
    // index always holds every base, so the task is as hard as in the full run).
    let mut order: Vec<usize> = (0..bases.len()).collect();
    SplitMix64::derive(cfg.seed, "perturb/order").shuffle(&mut order);
    let mut queries = Vec::new();
    for bi in order {
        let (p, d) = bases[bi];
        let used = per_partition.entry(p.partition).or_default();
        if cfg.max_perturb_groups.is_some_and(|m| *used >= m) {
            continue;
        }
        *used += 1;
        for (level, _) in LEVELS {
            for v in 0..cfg.variants_per_level {
                let mut rng =
                    SplitMix64::derive(cfg.seed, &format!("perturb/{}/{level}/{v}", p.group));
                queries.push(Query {
                    partition: p.partition,
                    source: d.source,
                    group: p.group.clone(),
                    truth: Some(p.group.clone()),
                    level: Some(level),
                    features: perturb(&d.features, level, &mut rng),
                    extractor: d.extractor.clone(),
                });
            }
        }
    }
    queries.sort_by_key(|q| q.partition);
    Scenario { templates, queries }
}

/// One base document per group (seeded pick) becomes a single-exemplar template, all in
/// one index (one template per real layout family); perturbed copies of each base are then
/// identified against the whole index.
pub fn perturbation(
    groups: &BTreeMap<&str, Vec<&Doc>>,
    plans: &[GroupPlan],
    cfg: &Config,
    policy: &Policy,
) -> (Vec<Case>, usize) {
    let s = perturbation_scenario(groups, plans, cfg);
    let (cases, _, templates) = evaluate_scenario(&s, policy);
    (cases, templates.len())
}

/// The observation the template's monitor gets for a document of its stream. It is
/// computed against the stream's template whatever the decision, because a redesign that
/// makes documents NEW must still reach that template's monitor to be detected as *its*
/// change (the server attributes documents to a template by source; see docs/quality.md).
fn observation(v: &preflight_engine::ValidatedDocument, t: &Template) -> DriftObservation {
    DriftObservation {
        similarity: diagnostics::similarity(v, t),
        drift: diagnostics::drift(v, t),
        extractor_confidence: v.extractor().confidence,
    }
}

/// Per registered group with ≥ 3 held-out documents: a *sudden* stream (stable documents,
/// then a fixed 50 % redesign of the layout, each copy OCR-jittered) and a *gradual* one
/// (the perturbation level ramps from 5 % to 50 % over `change_len` documents). Stable
/// documents are held-out members drawn with replacement, each with 5 % OCR jitter, so the
/// stable phase carries the group's real variation.
pub fn drift_streams(
    groups: &BTreeMap<&str, Vec<&Doc>>,
    plans: &[GroupPlan],
    templates: &BTreeMap<String, Template>,
    cfg: &Config,
) -> Vec<(Partition, StreamResult)> {
    let mut eligible: Vec<&GroupPlan> = plans
        .iter()
        .filter(|p| p.registered() && p.queries.len() >= 3)
        .collect();
    SplitMix64::derive(cfg.seed, "streams/order").shuffle(&mut eligible);
    if let Some(m) = cfg.max_stream_groups {
        // Keep both partitions represented in the small run.
        let mut tune: Vec<&GroupPlan> = eligible
            .iter()
            .copied()
            .filter(|p| p.partition == Partition::Tune)
            .take(m / 2)
            .collect();
        tune.extend(
            eligible
                .iter()
                .copied()
                .filter(|p| p.partition == Partition::Validate)
                .take(m - m / 2),
        );
        eligible = tune;
    }
    let mut out = Vec::new();
    for p in eligible {
        let m = &groups[p.group.as_str()];
        let t = &templates[&p.group];
        for kind in ["sudden", "gradual"] {
            let mut rng = SplitMix64::derive(cfg.seed, &format!("stream/{kind}/{}", p.group));
            let redesign = perturb(
                &m[p.queries[rng.below(p.queries.len())]].features,
                0.5,
                &mut rng,
            );
            let mut state = DriftDetectorState::new();
            let mut alarms = Vec::new();
            let len = cfg.stable_len + cfg.change_len;
            for i in 0..len {
                let d = m[p.queries[rng.below(p.queries.len())]];
                let f = if i < cfg.stable_len {
                    perturb(&d.features, 0.05, &mut rng)
                } else if kind == "sudden" {
                    perturb(&redesign, 0.05, &mut rng)
                } else {
                    let step = (i - cfg.stable_len + 1) as f64 / cfg.change_len as f64;
                    perturb(&d.features, 0.05 + 0.45 * step, &mut rng)
                };
                let v = validate(&f, &d.extractor).expect("stream documents validate");
                if state.observe(&observation(&v, t)).is_some() {
                    alarms.push(i);
                }
            }
            out.push((
                p.partition,
                StreamResult {
                    kind: kind.to_string(),
                    group: p.group.clone(),
                    change_at: cfg.stable_len,
                    alarms,
                    len,
                    warmup: DETECTOR_WARMUP,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflight_engine::{BoundingBox, ExtractorMetadata};

    fn doc(source: &'static str, group: &str, i: usize) -> Doc {
        let b = BoundingBox {
            x: 0.1,
            y: 0.1 + i as f64 * 0.01,
            width: 0.5,
            height: 0.02,
            element_type: "text".into(),
            confidence: 0.9,
            reading_order: 0,
            page: None,
        };
        Doc {
            source,
            group: group.into(),
            name: format!("{group}-{i}"),
            features: StructuralFeatures {
                element_count: 1,
                table_count: 0,
                text_block_count: 1,
                image_count: 0,
                page_count: 1,
                text_density: 0.01,
                layout_complexity: 0.1,
                column_count: 1,
                has_header: false,
                has_footer: false,
                bounding_boxes: vec![b],
            },
            extractor: ExtractorMetadata {
                vendor: "v".into(),
                model: "m".into(),
                version: "1".into(),
                confidence: 0.9,
                latency_ms: 1.0,
                cost_usd: None,
            },
        }
    }

    #[test]
    fn plans_label_exemplars_queries_and_novel_groups() {
        let mut docs = Vec::new();
        for i in 0..8 {
            docs.push(doc("sroie", "sroie:BIG", i));
        }
        for i in 0..4 {
            docs.push(doc("sroie", "sroie:SMALL", i));
            docs.push(doc("azure", "azure:FORM", i));
        }
        let groups = by_group(&docs);
        let cfg = Config {
            withheld_share: 0.0,
            ..Config::small(42)
        };
        let plans = plan(&groups, &cfg);
        let get = |g: &str| plans.iter().find(|p| p.group == g).unwrap();
        let big = get("sroie:BIG");
        assert_eq!(big.exemplars.len(), 3);
        assert_eq!(big.queries.len(), 5);
        assert!(big.exemplars.iter().all(|e| !big.queries.contains(e)));
        assert!(
            !get("sroie:SMALL").registered(),
            "SROIE issuers need 5 receipts"
        );
        let form = get("azure:FORM");
        assert_eq!((form.exemplars.len(), form.queries.len()), (2, 2));
        for p in &plans {
            assert_eq!(p.partition, partition_of(&p.group));
        }
        // Same seed, same plan; another seed picks other exemplars for some group.
        assert_eq!(plans, plan(&groups, &cfg));
        let all_withheld = Config {
            withheld_share: 1.0,
            ..cfg.clone()
        };
        assert!(plan(&groups, &all_withheld).iter().all(|p| !p.registered()));
    }

    /// Six documents of one registrable VRDU group and one lone SROIE receipt, with
    /// nothing withheld.
    fn one_group_and_one_stranger() -> (Vec<Doc>, Config) {
        let mut docs = Vec::new();
        for i in 0..6 {
            docs.push(doc("vrdu", "vrdu:A", i));
        }
        docs.push(doc("sroie", "sroie:ONE", 0));
        let cfg = Config {
            withheld_share: 0.0,
            ..Config::small(7)
        };
        (docs, cfg)
    }

    #[test]
    fn scenarios_are_the_data_the_benchmark_evaluates() {
        let (docs, cfg) = one_group_and_one_stranger();
        let groups = by_group(&docs);
        let plans = plan(&groups, &cfg);
        let real = real_group_scenario(&groups, &plans);
        assert_eq!(real.templates.len(), 1);
        assert_eq!(real.templates[0].group, "vrdu:A");
        assert_eq!(real.templates[0].exemplars.len(), 3);
        let t = real.templates[0].template(4, "v-4");
        assert_eq!(
            (
                t.template_id.as_str(),
                t.version,
                t.template_version_id.as_str()
            ),
            ("vrdu:A", 4, "v-4")
        );
        assert_eq!(real.queries.len(), 3 + 1);
        // Plan (group name) order: the never-registered "sroie:ONE" comes first.
        assert_eq!(real.queries[0].truth, None);
        assert!(real.queries[1..]
            .iter()
            .all(|q| q.truth.as_deref() == Some("vrdu:A") && q.level.is_none()));

        let perturbed = perturbation_scenario(&groups, &plans, &cfg);
        assert_eq!(perturbed.templates.len(), 2, "one template per group");
        assert!(perturbed.templates.iter().all(|t| t.exemplars.len() == 1));
        assert_eq!(perturbed.queries.len(), 2 * LEVELS.len());
        assert!(perturbed
            .queries
            .windows(2)
            .all(|w| w[0].partition <= w[1].partition));
        assert_eq!(perturbed, perturbation_scenario(&groups, &plans, &cfg));
        let (cases, templates) = perturbation(&groups, &plans, &cfg, &Policy::default());
        assert_eq!((cases.len(), templates), (perturbed.queries.len(), 2));
    }

    #[test]
    fn novel_documents_are_never_labeled_known() {
        let (docs, cfg) = one_group_and_one_stranger();
        let groups = by_group(&docs);
        let plans = plan(&groups, &cfg);
        let (cases, index, _) = real_groups(&groups, &plans, &Policy::default());
        assert_eq!(index.len(), 1);
        assert_eq!(cases.len(), 3 + 1, "3 held-out + 1 novel");
        let novel: Vec<_> = cases.iter().filter(|c| c.outcome.truth.is_none()).collect();
        assert_eq!(novel.len(), 1);
        assert_eq!(novel[0].source, "sroie");
    }
}
