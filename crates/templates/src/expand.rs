//! Instantiation: a template and a caller's values → a WorkReq.
//!
//! Every value is checked against its declaration first (every problem
//! reported, each naming the parameter and the rule); then the request is
//! built by rendering each text once. The result is an ordinary WorkReq:
//! whoever instantiates hands it to the same checks a hand-written request
//! goes through.

use crate::Inventory;
use crate::document::{BlockDoc, JobDoc, Template};
use crate::param::Value;
use crate::text::Text;
use interlock_core::{Block, Job, OutputRef, RetryPolicy, WorkReq};
use std::collections::BTreeMap;
use std::time::Duration;

/// A block's fan-out, as instantiation found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// The block's index in the template.
    pub template_block: usize,
    /// Where the items came from, for people: `machines of site aab`.
    pub source: String,
    /// Items found, hence jobs per template job.
    pub items: usize,
    /// Blocks of the request it became (more than one with `wave`).
    pub blocks: usize,
}

/// A template made concrete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub req: WorkReq,
    pub fanouts: Vec<FanOut>,
    /// The values used, defaults included, as text.
    pub values: BTreeMap<String, String>,
}

type Values = BTreeMap<String, Value>;

impl Template {
    /// Checks `given` and builds the request. Errors name the parameter
    /// (or the template field) and what is wrong, all of them at once.
    pub fn expand(
        &self,
        given: &BTreeMap<String, String>,
        inventory: &dyn Inventory,
    ) -> Result<Expansion, Vec<String>> {
        let doc = self.document();
        let mut errs = Vec::new();
        for k in given.keys() {
            if !doc.params.contains_key(k) {
                let hint = interlock_core::did_you_mean(k, doc.params.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean {s:?}?)"))
                    .unwrap_or_default();
                let known: Vec<&str> = doc.params.keys().map(String::as_str).collect();
                errs.push(format!(
                    "parameter {k:?} is not a parameter of template {:?}{hint}; it has: {}",
                    doc.name,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        let mut values = Values::new();
        let mut texts = BTreeMap::new();
        for (name, spec) in &doc.params {
            let Some(text) = given.get(name).or(spec.default.as_ref()) else {
                let desc = if spec.desc.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", spec.desc)
                };
                errs.push(format!(
                    "parameter {name:?} is required{desc}: give {name}=VALUE"
                ));
                continue;
            };
            match spec.check(name, text, Some(inventory)) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                    texts.insert(name.clone(), text.clone());
                }
                Err(e) => errs.extend(e),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let r = Renderer { values: &values };
        let w = &doc.workflow;
        let mut req = WorkReq {
            name: r.text(&mut errs, "workflow.name", &w.name, None),
            desc: r.text(&mut errs, "workflow.desc", &w.desc, None),
            labels: w
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), r.text(&mut errs, "workflow.labels", &v.0, None)))
                .collect(),
            deadline: w
                .deadline
                .as_ref()
                .and_then(|d| r.duration(&mut errs, "workflow.deadline", &d.0, None)),
            ..WorkReq::default()
        };
        let mut fanouts = Vec::new();
        let mut ids = Instances::default();
        for (bi, b) in w.blocks.iter().enumerate() {
            let at = format!("workflow.blocks[{bi}]");
            let Some(f) = &b.for_each else {
                let mut block = r.block(&mut errs, &at, b, None);
                for (ji, j) in b.jobs.iter().enumerate() {
                    let at = format!("{at}.jobs[{ji}]");
                    let job = r.job(&mut errs, &at, j, None);
                    let pos = (req.blocks.len(), block.jobs.len());
                    block.jobs.push(ids.wire(&mut errs, &at, j, job, None, pos));
                }
                req.blocks.push(block);
                continue;
            };
            let (source, items) = match (&f.machines_of, &f.items) {
                (Some(site), _) => {
                    let site = r.text(&mut errs, &format!("{at}.forEach.machinesOf"), site, None);
                    match inventory.machines_of(&site) {
                        Some(m) => (format!("machines of site {site}"), m),
                        None => {
                            errs.push(format!(
                                "{at}.forEach.machinesOf: {site:?} is not a site in the inventory"
                            ));
                            continue;
                        }
                    }
                }
                (None, Some(items)) => {
                    let p = Text::parse(items)
                        .ok()
                        .and_then(|t| t.sole_ref().map(str::to_string))
                        .unwrap_or_default();
                    let list = match values.get(&p) {
                        Some(Value::List(l)) => l.iter().filter_map(|v| v.render().ok()).collect(),
                        _ => Vec::new(),
                    };
                    (format!("items of parameter {p}"), list)
                }
                (None, None) => continue, // refused when the template was created
            };
            if items.is_empty() {
                errs.push(format!(
                    "{at}: the forEach over {source} found nothing; an empty fan-out is an error, \
                     not an empty block"
                ));
                continue;
            }
            let wave = match &f.wave {
                Some(w) => match r.int(&mut errs, &format!("{at}.forEach.wave"), &w.0, None) {
                    Some(n) if n >= 1 => n as usize,
                    Some(n) => {
                        errs.push(format!(
                            "{at}.forEach.wave: {n} is not a wave size (1 or more)"
                        ));
                        continue;
                    }
                    None => continue,
                },
                None => items.len(),
            };
            let var = f.var_name();
            let waves: Vec<&[String]> = items.chunks(wave).collect();
            for (wi, chunk) in waves.iter().enumerate() {
                let wave_of = (waves.len() > 1).then_some((wi, waves.len()));
                let mut block = r.block(&mut errs, &at, b, wave_of);
                for item in chunk.iter() {
                    for (ji, j) in b.jobs.iter().enumerate() {
                        let at = format!("{at}.jobs[{ji}]");
                        let job = r.job(&mut errs, &at, j, Some((var, item)));
                        let pos = (req.blocks.len(), block.jobs.len());
                        block
                            .jobs
                            .push(ids.wire(&mut errs, &at, j, job, Some(item), pos));
                    }
                }
                req.blocks.push(block);
            }
            fanouts.push(FanOut {
                template_block: bi,
                source,
                items: items.len(),
                blocks: waves.len(),
            });
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Expansion {
            req,
            fanouts,
            values: texts,
        })
    }
}

/// Where each template job id's instances landed in the request: (the
/// item it was made for, block, job).
#[derive(Default)]
struct Instances(BTreeMap<String, Vec<(Option<String>, usize, usize)>>);

impl Instances {
    /// Records `job` (made from `j` for `item`, at `pos`) under its id, and
    /// points its inputs at the instances they name: the one made for the
    /// same item, else the only one.
    fn wire(
        &mut self,
        errs: &mut Vec<String>,
        at: &str,
        j: &JobDoc,
        mut job: Job,
        item: Option<&String>,
        pos: (usize, usize),
    ) -> Job {
        for (arg, input) in &j.inputs {
            let found = self
                .0
                .get(&input.job)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let same_item: Vec<_> = found
                .iter()
                .filter(|(i, _, _)| i.is_some() && i.as_ref() == item)
                .collect();
            // Its own item's instance; else the one instance made outside
            // any forEach (never another item's).
            let chosen = match (same_item.as_slice(), found) {
                ([one], _) => Some(*one),
                ([], [only]) if only.0.is_none() => Some(only),
                _ => None,
            };
            match chosen {
                Some((_, block, jb)) => {
                    job.inputs.insert(
                        arg.clone(),
                        OutputRef {
                            block: *block,
                            job: *jb,
                            output: input.output.clone(),
                        },
                    );
                }
                None => errs.push(format!(
                    "{at}.inputs.{arg}: job {:?} has {} instance(s){}; an input can name it only \
                     from a forEach over the same items, or when it runs once outside any forEach",
                    input.job,
                    found.len(),
                    item.map(|i| format!(", none of them for {i:?}"))
                        .unwrap_or_default()
                )),
            }
        }
        if let Some(id) = &j.id {
            self.0
                .entry(id.clone())
                .or_default()
                .push((item.cloned(), pos.0, pos.1));
        }
        job
    }
}

/// The loop variable in scope and its current item.
type Item<'a> = Option<(&'a str, &'a String)>;

struct Renderer<'a> {
    values: &'a Values,
}

impl Renderer<'_> {
    fn text(&self, errs: &mut Vec<String>, at: &str, s: &str, item: Item<'_>) -> String {
        let rendered = Text::parse(s).and_then(|t| {
            t.render(|name| match item {
                Some((var, v)) if var == name => Ok(v.clone()),
                _ => match self.values.get(name) {
                    Some(v) => v.render().map_err(|e| format!("parameter {name:?} {e}")),
                    None => Err(format!("unknown parameter {name:?}")),
                },
            })
        });
        rendered.unwrap_or_else(|e| {
            errs.push(format!("{at}: {e}"));
            String::new()
        })
    }

    fn int(&self, errs: &mut Vec<String>, at: &str, s: &str, item: Item<'_>) -> Option<i64> {
        let t = self.text(errs, at, s, item);
        match t.trim().parse() {
            Ok(i) => Some(i),
            Err(_) => {
                errs.push(format!("{at}: {t:?} is not an integer"));
                None
            }
        }
    }

    fn duration(
        &self,
        errs: &mut Vec<String>,
        at: &str,
        s: &str,
        item: Item<'_>,
    ) -> Option<Duration> {
        let t = self.text(errs, at, s, item);
        match humantime::parse_duration(t.trim()) {
            Ok(d) => Some(d),
            Err(_) => {
                errs.push(format!("{at}: {t:?} is not a duration such as 30s"));
                None
            }
        }
    }

    fn i32(&self, errs: &mut Vec<String>, at: &str, s: &str, item: Item<'_>) -> i32 {
        match self.int(errs, at, s, item).map(i32::try_from) {
            Some(Ok(i)) => i,
            Some(Err(_)) => {
                errs.push(format!("{at}: out of range"));
                0
            }
            None => 0,
        }
    }

    fn block(
        &self,
        errs: &mut Vec<String>,
        at: &str,
        b: &BlockDoc,
        wave: Option<(usize, usize)>,
    ) -> Block {
        // The block's own fields see the parameters only; the loop
        // variable is its jobs'.
        let mut desc = self.text(errs, &format!("{at}.desc"), &b.desc, None);
        if let Some((i, n)) = wave {
            desc = format!("{desc} (wave {} of {n})", i + 1)
                .trim_start()
                .to_string();
        }
        Block {
            desc,
            rate_limit: self.i32(errs, &format!("{at}.rateLimit"), &b.rate_limit.0, None),
            max_failures: b
                .max_failures
                .as_ref()
                .map(|m| self.i32(errs, &format!("{at}.maxFailures"), &m.0, None))
                .unwrap_or(0),
            jobs: Vec::new(),
        }
    }

    fn job(&self, errs: &mut Vec<String>, at: &str, j: &JobDoc, item: Item<'_>) -> Job {
        Job {
            name: j.name.clone(),
            desc: self.text(errs, &format!("{at}.desc"), &j.desc, item),
            args: j
                .args
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        self.text(errs, &format!("{at}.args.{k}"), &v.0, item),
                    )
                })
                .collect(),
            timeout: j
                .timeout
                .as_ref()
                .and_then(|t| self.duration(errs, &format!("{at}.timeout"), &t.0, item)),
            retry: j.retry.as_ref().map(|r| {
                Box::new(RetryPolicy {
                    max_attempts: self
                        .int(
                            errs,
                            &format!("{at}.retry.maxAttempts"),
                            &r.max_attempts.0,
                            item,
                        )
                        .unwrap_or(0)
                        .clamp(0, u32::MAX as i64) as u32,
                    initial_backoff: self
                        .duration(
                            errs,
                            &format!("{at}.retry.initialBackoff"),
                            &r.initial_backoff.0,
                            item,
                        )
                        .unwrap_or_default(),
                    max_backoff: self
                        .duration(
                            errs,
                            &format!("{at}.retry.maxBackoff"),
                            &r.max_backoff.0,
                            item,
                        )
                        .unwrap_or_default(),
                })
            }),
            inputs: BTreeMap::new(),
        }
    }
}
