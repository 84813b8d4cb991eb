//! What an arena preset runs: its tasks, its mechanisms (with parameters scaled to the task's
//! lengths) and the run config of each (task, mechanism) cell.

use anyhow::{Context, bail};
use eft_attention::AttentionConfig;
use eft_train::{RunConfig, layered_with, preset};
use serde::Deserialize;

/// One (task, mechanism) cell of an arena.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Task name, e.g. `listops`.
    pub task: String,
    /// Mechanism name, e.g. `linformer`.
    pub mechanism: String,
    /// The cell's folder name, `<task>-<mechanism>`.
    pub name: String,
    /// The run config.
    pub config: RunConfig,
    /// Which of the cell's seeds this is (`--seeds`), from 0.
    pub replica: u64,
}

/// Every task the arena runs, in the order of LRA's Table 1 and then the diagnostics.
const AVAILABLE: &[&str] = eft_data::TaskConfig::ARENA;

/// The quick preset's mechanisms: one or more per family (exact, memory-efficient, sparse,
/// LSH, low-rank, kernel, recurrence), LRA's best performers (`bigbird`, `longformer`) and one of
/// its two fastest (`linear`) among them, parameters scaled to 32–576 tokens.
const QUICK: &[&str] = &[
    "full",
    "flash:tile=32",
    "local:block=16",
    "longformer:window=8",
    "bigbird:block=8:random_blocks=2",
    "lsh:buckets=4:chunk=16",
    "linformer:k=16",
    "linear",
    "performer:features=64",
    "xl:segment=32:mem_len=32",
];

/// Seeds per cell when `--seeds` is not given: the quick preset is cheap enough for error bars.
pub fn default_seeds(preset: &str) -> usize {
    if preset == "quick" { 3 } else { 1 }
}

/// The lite and paper presets' mechanisms: LRA's families with their default parameters.
const LRA: &[&str] = &[
    "full",
    "local",
    "strided",
    "longformer",
    "bigbird",
    "linformer",
    "nystrom",
    "linear",
    "performer:kernel=relu",
    "lsh",
    "sinkhorn",
    "synthesizer",
];

/// A mechanism as an arena names it: `name:key=value:…`, then any techniques joined by `+`
/// (`full+switch`, `full+switch:experts=8`), read and checked.
#[derive(Debug, Clone)]
pub struct MechanismSpec {
    /// The column's name: the mechanism's, then each technique's (`full+switch-experts8`).
    pub name: String,
    /// The parameters given, as text.
    pub params: Vec<(String, String)>,
    /// The checked config they make.
    pub config: AttentionConfig,
    /// Model fields the techniques set, as TOML values (`model.feed_forward = { kind = … }`).
    pub techniques: Vec<(String, toml::Value)>,
}

/// Experts a `+switch` column has when it does not say.
const SWITCH_EXPERTS: i64 = 4;

/// The most steps a `+act` column's positions take when it does not say.
const ACT_STEPS: i64 = 4;

/// The top probability that lets a `+exits` column's sequences exit, when it does not say
/// (the quick models are rarely more confident than that).
const EXIT_THRESHOLD: f64 = 0.5;

/// Reads `name:key=value:…` into its name and parameters.
fn split_spec(spec: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default().trim().to_string();
    let params = parts
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("mechanism `{spec}`: `{p}` is not KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((name, params))
}

/// A technique after `+`: the model fields it sets with their TOML values (its parameters
/// checked against the field's type), and its label in the column name. `switch` sets
/// `model.feed_forward`; `act` sets `model.depth` and one block (the Universal Transformer's
/// shared step); `exits` and `learned_exits` set `model.exits` (confidence exits, or a depth
/// classifier's); `distill` sets `train.distill` with the same task's cell of mechanism
/// `teacher` (default `full`) as the teacher, resolved by [`resolve_teachers`].
fn parse_technique(spec: &str) -> anyhow::Result<(String, Vec<(String, toml::Value)>)> {
    let (name, params) = split_spec(spec)?;
    let label = params
        .iter()
        .fold(name.clone(), |l, (k, v)| format!("{l}-{k}{v}"));
    if name == "distill" {
        return parse_distill(spec, label, params);
    }
    let (defaults, field): (&[(&str, i64)], &str) = match name.as_str() {
        "switch" => (&[("experts", SWITCH_EXPERTS)], "model.feed_forward"),
        "act" => (&[("max_steps", ACT_STEPS)], "model.depth"),
        "exits" | "learned_exits" => (&[], "model.exits"),
        other => bail!(
            "unknown technique `{other}` in `{spec}`; available: switch, act, exits, \
             learned_exits, distill"
        ),
    };
    let mut table = toml::Table::new();
    let kind = match name.as_str() {
        "exits" => "confidence",
        "learned_exits" => "learned",
        other => other,
    };
    table.insert("kind".into(), toml::Value::String(kind.into()));
    if name == "exits" {
        table.insert("threshold".into(), toml::Value::Float(EXIT_THRESHOLD));
    }
    for (k, v) in defaults {
        table.insert(k.to_string(), toml::Value::Integer(*v));
    }
    for (k, v) in params {
        let value = v
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| v.parse::<f64>().map(toml::Value::Float))
            .map_err(|_| anyhow::anyhow!("technique `{spec}`: `{k}={v}` is not a number"))?;
        table.insert(k, value);
    }
    let value = toml::Value::Table(table);
    let mut sets = vec![(field.to_string(), value.clone())];
    match name.as_str() {
        "switch" => {
            eft_model::FeedForwardConfig::deserialize(value)
                .with_context(|| format!("technique `{spec}`"))?;
        }
        "exits" | "learned_exits" => {
            eft_model::ExitsConfig::deserialize(value)
                .with_context(|| format!("technique `{spec}`"))?;
        }
        _ => {
            eft_model::DepthConfig::deserialize(value)
                .with_context(|| format!("technique `{spec}`"))?;
            sets.push(("model.n_layers".into(), toml::Value::Integer(1)));
        }
    }
    Ok((label, sets))
}

/// `distill[:teacher=NAME][:temperature=T][:alpha=A]`: `train.distill` naming the teacher by
/// its mechanism until [`resolve_teachers`] turns it into the cell's folder.
fn parse_distill(
    spec: &str,
    label: String,
    params: Vec<(String, String)>,
) -> anyhow::Result<(String, Vec<(String, toml::Value)>)> {
    let mut table = toml::Table::new();
    table.insert("teacher".into(), toml::Value::String("full".into()));
    for (k, v) in params {
        let value =
            match k.as_str() {
                "teacher" => toml::Value::String(v),
                _ => toml::Value::Float(v.parse::<f64>().map_err(|_| {
                    anyhow::anyhow!("technique `{spec}`: `{k}={v}` is not a number")
                })?),
            };
        table.insert(k, value);
    }
    let value = toml::Value::Table(table);
    eft_train::distill::DistillConfig::deserialize(value.clone())
        .map_err(anyhow::Error::from)
        .and_then(|d| Ok(d.validate()?))
        .with_context(|| format!("technique `{spec}`"))?;
    Ok((label, vec![("train.distill".into(), value)]))
}

/// Points each `+distill` cell's teacher (a mechanism's name) at the folder in `dir` of the
/// same task's cell of that mechanism, which must come earlier in `cells` so that it has
/// trained first.
pub fn resolve_teachers(cells: &mut [Cell], dir: &std::path::Path) -> anyhow::Result<()> {
    for i in 0..cells.len() {
        let Some(d) = &cells[i].config.train.distill else {
            continue;
        };
        let teacher = format!("{}-{}", cells[i].task, d.teacher);
        if !cells[..i].iter().any(|c| c.name == teacher) {
            bail!(
                "cell {} distils from {teacher}, which this arena does not train before it: \
                 list mechanism `{}` before `{}` in --mechanisms",
                cells[i].name,
                d.teacher,
                cells[i].mechanism
            );
        }
        let path = dir.join(&teacher).display().to_string();
        if let Some(d) = &mut cells[i].config.train.distill {
            d.teacher = path;
        }
    }
    Ok(())
}

/// Splits `name:key=value:…` into the mechanism's name and parameters, and checks them.
pub fn parse_mechanism(spec: &str) -> anyhow::Result<MechanismSpec> {
    let mut pieces = spec.split('+');
    let (mut name, params) = split_spec(pieces.next().unwrap_or_default())?;
    // Checked now, so a typo stops the arena before hours of training, not in the middle.
    let config = AttentionConfig::from_name_and_params(&name, &params)?;
    let mut techniques = Vec::new();
    for technique in pieces {
        let (label, sets) = parse_technique(technique)?;
        name = format!("{name}+{label}");
        techniques.extend(sets);
    }
    Ok(MechanismSpec {
        name,
        params,
        config,
        techniques,
    })
}

/// The columns with names of their own: a mechanism given more than once with other parameters
/// (`nystrom:pinv_iters=6`, `nystrom:pinv_iters=24`) is named with the parameters that tell
/// its columns apart (`nystrom-pinv_iters6`), so their cells get folders of their own. The
/// same column twice is an error.
fn distinct_columns(mut specs: Vec<MechanismSpec>) -> anyhow::Result<Vec<MechanismSpec>> {
    let given: Vec<(String, Vec<(String, String)>)> = specs
        .iter()
        .map(|s| (s.name.clone(), s.params.clone()))
        .collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        let twins: Vec<&Vec<(String, String)>> = given
            .iter()
            .filter(|(name, _)| *name == given[i].0)
            .map(|(_, params)| params)
            .collect();
        if twins.len() == 1 {
            continue;
        }
        // The parameters not every twin shares.
        let label: String = spec
            .params
            .iter()
            .filter(|p| !twins.iter().all(|t| t.contains(p)))
            .map(|(k, v)| format!("-{k}{v}"))
            .collect();
        if label.is_empty() {
            bail!(
                "mechanism `{}` is given twice with the same parameters; give each column other \
                 parameters or drop one",
                given[i].0
            );
        }
        let (attention, techniques) = match spec.name.split_once('+') {
            Some((a, t)) => (a.to_string(), format!("+{t}")),
            None => (spec.name.clone(), String::new()),
        };
        spec.name = format!("{attention}{label}{techniques}");
    }
    Ok(specs)
}

/// The cells of `preset` for the chosen tasks and mechanisms, with `sets` applied last.
/// Each cell `seeds` times: replica 0 keeps its name, replica r > 0 is `<name>-seed<r>` with
/// `train.replica = r` (other initial weights, batch order and dropout; the same data).
pub fn with_seeds(cells: Vec<Cell>, seeds: usize) -> Vec<Cell> {
    cells
        .into_iter()
        .flat_map(|cell| {
            (0..seeds.max(1) as u64).map(move |r| {
                let mut c = cell.clone();
                if r > 0 {
                    c.name = format!("{}-seed{r}", cell.name);
                    c.config.name.clone_from(&c.name);
                    c.config.train.replica = r;
                    c.replica = r;
                }
                c
            })
        })
        .collect()
}

pub fn cells(
    preset_name: &str,
    tasks: &[String],
    mechanisms: &[String],
    sets: &[(String, String)],
) -> anyhow::Result<Vec<Cell>> {
    let defaults: &[&str] = match preset_name {
        "quick" => QUICK,
        "lite" | "paper" => LRA,
        other => bail!("unknown arena preset `{other}`; use quick, lite or paper"),
    };
    let tasks: Vec<String> = if tasks.is_empty() {
        AVAILABLE.iter().map(|t| t.to_string()).collect()
    } else {
        tasks.to_vec()
    };
    for t in &tasks {
        if !AVAILABLE.contains(&t.as_str()) {
            bail!("unknown task `{t}`; available: {}", AVAILABLE.join(", "));
        }
    }
    let specs: Vec<String> = if mechanisms.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        mechanisms.to_vec()
    };
    let specs = distinct_columns(
        specs
            .iter()
            .map(|s| parse_mechanism(s))
            .collect::<anyhow::Result<_>>()?,
    )?;
    let mut out = Vec::new();
    for task in &tasks {
        let base = task_base(task, preset_name)?;
        for spec in &specs {
            let MechanismSpec {
                name: mechanism,
                params,
                config: attention,
                techniques,
            } = spec.clone();
            let name = format!("{task}-{mechanism}");
            let mut values = vec![
                ("name".to_string(), toml::Value::String(name.clone())),
                (
                    "model.attention".to_string(),
                    attention.given_table(&params),
                ),
            ];
            values.extend(techniques);
            // A CLS token would only see the first segment (segment recurrence) or its own block
            // (block-local attention, no global tokens): the head would classify the first few
            // tokens, blind to the rest (MNIST's first 50 pixels are blank), so such cells pool
            // the mean.
            let cls_blind = attention.recurrence().is_some() || attention.name() == "local";
            if cls_blind && base.model.pool == eft_model::Pool::Cls {
                values.push(("model.pool".into(), toml::Value::String("mean".into())));
            }
            let config = layered_with(&base, None, &values, sets)?;
            out.push(Cell {
                task: task.clone(),
                mechanism,
                name,
                config,
                replica: 0,
            });
        }
    }
    Ok(out)
}

/// A task's quick preset cut so that every task × every family fits about 20 minutes a seed on
/// two cores: short sequences, small splits, few steps, one validation at the end. Sizes were
/// chosen from measured step times (see the README's quick-arena table for what they reach).
fn quick_cell(task: &str) -> anyhow::Result<RunConfig> {
    use eft_data::TaskConfig as T;
    let mut c = preset(task, "quick")?;
    let (steps, batch) = match &mut c.task {
        T::ListOps(t) => {
            (t.train, t.val, t.test) = (5_000, 200, 500);
            (400, 32)
        }
        T::Text(t) => {
            (t.max_len, t.train, t.val, t.test) = (64, 2_000, 200, 500);
            (150, 32)
        }
        T::Retrieval(t) => {
            // No quick budget learns it: 256-byte passages against other-genre negatives over
            // 800 steps of 32 left chance on one seed of three, at about 2 hours a column
            // (bench/results/quick-sizing.md); the cheap cell stays, reported as not learned.
            (t.passage_len, t.train, t.val, t.test) = (32, 2_000, 200, 500);
            (150, 32)
        }
        T::Image(t) => {
            (t.size, t.train, t.val, t.test) = (7, 5_000, 200, 500);
            (300, 32)
        }
        T::Pathfinder(t) => {
            // LRA's snakes (6 paddles and distractors) stayed at chance in every quick budget
            // tried, and 4 paddles needed 800 steps of 32; snakes of 3 paddles without
            // distractors learn in 500 steps of 16 (bench/results/quick-sizing.md).
            t.contour_length = 3;
            t.geometry.distractors = Some(0);
            (t.train, t.val, t.test) = (10_000, 200, 500);
            (500, 16)
        }
        T::PathX(t) => {
            (t.train, t.val, t.test) = (500, 100, 200);
            (40, 4)
        }
        T::Mqar(t) => {
            (t.len, t.pairs, t.vocab, t.train, t.val, t.test) = (32, 4, 64, 5_000, 200, 500);
            (400, 32)
        }
        T::Copying(t) => {
            (t.len, t.tokens, t.train, t.val, t.test) = (32, 4, 5_000, 200, 500);
            (300, 32)
        }
        T::Induction(t) => {
            (t.len, t.train, t.val, t.test) = (32, 5_000, 200, 500);
            (300, 32)
        }
        other => bail!("no quick arena cell for task `{}`", other.name()),
    };
    c.train.set_steps(steps, steps);
    c.train.batch_size = batch;
    let pathfinder = matches!(c.task, T::Pathfinder(_));
    if let eft_train::Schedule::Cosine { warmup, lr, .. } = &mut c.train.schedule {
        *warmup = steps / 10;
        // Pathfinder's loss sits at ln 2 for the first few hundred steps: a larger step
        // leaves it within the budget.
        if pathfinder {
            *lr = 3e-3;
        }
    }
    Ok(c)
}

/// The run config every cell of `task` starts from under arena preset `name`.
fn task_base(task: &str, name: &str) -> anyhow::Result<RunConfig> {
    Ok(match name {
        "quick" => quick_cell(task)?,
        // LRA's task data and lengths, the quick model and a longer schedule.
        "lite" => {
            let paper = preset(task, "paper")?;
            let mut c = preset(task, "quick")?;
            c.task = paper.task;
            // LRA's 200k snake images would take hours to draw and, at 16K tokens each, 10 GB
            // to hold; 5k steps of batch 32 see 160k examples, so 20k images serve as well.
            if let eft_data::TaskConfig::Pathfinder(t) | eft_data::TaskConfig::PathX(t) =
                &mut c.task
            {
                (t.train, t.val, t.test) = (20_000, 2_000, 2_000);
            }
            c.train.set_steps(5_000, 500);
            c
        }
        _ => preset(task, "paper")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_carry_parameters_and_typos_are_caught_up_front() {
        let MechanismSpec { name, params, .. } =
            parse_mechanism("bigbird:block=8:random_blocks=2").unwrap();
        assert_eq!(name, "bigbird");
        assert_eq!(params.len(), 2);
        assert!(parse_mechanism("bigbrid").is_err());
        assert!(
            parse_mechanism("local:block")
                .unwrap_err()
                .to_string()
                .contains("KEY=VALUE")
        );
    }

    /// One mechanism under several parameter settings gets one column (and folder) per
    /// setting, named by what differs; the same setting twice is refused.
    #[test]
    fn repeated_mechanisms_are_named_by_their_differing_parameters() {
        let specs = [
            "nystrom:landmarks=16:pinv_iters=6",
            "nystrom:landmarks=16:pinv_iters=24",
            "full",
        ]
        .map(String::from);
        let columns = super::cells("quick", &["listops".into()], &specs, &[]).unwrap();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "listops-nystrom-pinv_iters6",
                "listops-nystrom-pinv_iters24",
                "listops-full"
            ]
        );
        let twice = ["local:block=8", "local:block=8"].map(String::from);
        let e = super::cells("quick", &["listops".into()], &twice, &[]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    /// `+switch` columns set the model's feed-forward branch; bad parameters stop the arena
    /// before it trains.
    #[test]
    fn techniques_after_a_plus_set_model_fields() {
        let spec = parse_mechanism("full+switch").unwrap();
        assert_eq!(spec.name, "full+switch");
        let spec = parse_mechanism("local:block=8+switch:experts=8:capacity_factor=2").unwrap();
        assert_eq!(spec.name, "local+switch-experts8-capacity_factor2");
        let columns = super::cells(
            "quick",
            &["listops".into()],
            &["full".into(), "full+switch:experts=8".into()],
            &[],
        )
        .unwrap();
        let eft_model::FeedForwardConfig::Switch(s) = &columns[1].config.model.feed_forward else {
            panic!("{:?}", columns[1].config.model.feed_forward)
        };
        assert_eq!(s.experts, 8);
        assert_eq!(columns[1].name, "listops-full+switch-experts8");
        assert_eq!(
            columns[0].config.model.feed_forward,
            eft_model::FeedForwardConfig::Dense
        );
        let act = parse_mechanism("full+act:max_steps=6").unwrap();
        assert_eq!(act.name, "full+act-max_steps6");
        assert_eq!(act.techniques.len(), 2, "model.depth and one block");
        let exits = parse_mechanism("full+exits:threshold=0.7").unwrap();
        assert_eq!(exits.techniques[0].0, "model.exits");
        let learned = parse_mechanism("full+learned_exits").unwrap();
        assert_eq!(learned.name, "full+learned_exits");
        for bad in [
            "full+switch:expert=8",
            "full+switch:experts=x",
            "full+moe",
            "full+act:max_step=6",
            "full+exits:threshold=x",
            "full+learned_exits:threshold=0.5",
        ] {
            assert!(parse_mechanism(bad).is_err(), "{bad}");
        }
        let columns = super::cells(
            "quick",
            &["listops".into()],
            &["full+exits".into(), "full+act".into()],
            &[],
        )
        .unwrap();
        assert_eq!(columns[0].config.model.exits.threshold(), Some(0.5));
        assert_eq!(columns[1].config.model.n_layers, 1);
        let e = super::cells(
            "quick",
            &["listops".into()],
            &["full+switch:experts=1".into()],
            &[],
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("experts"), "{e:#}");
    }

    /// `+distill` cells learn from the same task's earlier cell of the teacher mechanism, in
    /// the arena's folder; a teacher the arena does not train first is refused before training.
    #[test]
    fn distill_columns_take_the_earlier_teacher_cell() {
        let spec = parse_mechanism("linear+distill:alpha=0.7").unwrap();
        assert_eq!(spec.name, "linear+distill-alpha0.7");
        let mut columns = super::cells(
            "quick",
            &["listops".into(), "image".into()],
            &["full".into(), "linear+distill:alpha=0.7".into()],
            &[],
        )
        .unwrap();
        resolve_teachers(&mut columns, std::path::Path::new("arena/quick")).unwrap();
        let d = columns[3].config.train.distill.as_ref().unwrap();
        assert_eq!(columns[3].name, "image-linear+distill-alpha0.7");
        assert_eq!(
            (d.teacher.as_str(), d.alpha),
            ("arena/quick/image-full", 0.7)
        );
        assert!(columns[2].config.train.distill.is_none());
        let mut late = super::cells(
            "quick",
            &["listops".into()],
            &["linear+distill".into(), "full".into()],
            &[],
        )
        .unwrap();
        let e = resolve_teachers(&mut late, std::path::Path::new("a")).unwrap_err();
        assert!(
            e.to_string().contains("list mechanism `full` before"),
            "{e}"
        );
        for bad in [
            "full+distill:alpha=2",
            "full+distill:temperature=x",
            "full+distill:tau=1",
        ] {
            assert!(parse_mechanism(bad).is_err(), "{bad}");
        }
    }

    /// Seed 0 of a cell keeps its name and config; seed r > 0 is its own run with the same
    /// data seed and `train.replica = r`.
    #[test]
    fn seeds_make_replicas_of_each_cell() {
        let one = cells("quick", &["listops".into()], &["full".into()], &[]).unwrap();
        let three = with_seeds(one.clone(), 3);
        let names: Vec<&str> = three.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["listops-full", "listops-full-seed1", "listops-full-seed2"]
        );
        assert_eq!(three[0].config, one[0].config);
        for (r, c) in three.iter().enumerate() {
            assert_eq!((c.replica, c.config.train.replica), (r as u64, r as u64));
            assert_eq!(
                (c.config.seed, &c.config.task),
                (one[0].config.seed, &one[0].config.task)
            );
            assert_eq!(c.config.name, c.name);
        }
    }

    #[test]
    fn the_quick_preset_has_every_task_and_family_and_valid_cells() {
        let cells = cells("quick", &[], &[], &[]).unwrap();
        assert_eq!(cells.len(), QUICK.len() * AVAILABLE.len());
        for task in eft_data::TaskConfig::ARENA {
            for family in [
                "full",
                "flash",
                "local",
                "longformer",
                "bigbird",
                "lsh",
                "linformer",
                "linear",
                "performer",
                "xl",
            ] {
                assert!(
                    cells
                        .iter()
                        .any(|c| c.mechanism == family && c.task == *task),
                    "{task} × {family}"
                );
            }
        }
        let pool = |mechanism: &str, task: &str| {
            let cell = cells
                .iter()
                .find(|c| c.mechanism == mechanism && c.task == task);
            cell.unwrap().config.model.pool
        };
        assert_eq!(
            pool("xl", "listops"),
            eft_model::Pool::Mean,
            "CLS would see one segment"
        );
        assert_eq!(
            pool("local", "image"),
            eft_model::Pool::Mean,
            "CLS would see its own block"
        );
        assert_eq!(
            pool("longformer", "image"),
            eft_model::Pool::Cls,
            "longformer's CLS is a global token"
        );
        assert_eq!(
            pool("xl", "mqar"),
            eft_model::Pool::None,
            "mqar keeps its per-position head"
        );
        for cell in &cells {
            cell.config.validate().unwrap();
        }
        let image = super::cells("quick", &["image".into()], &["full".into()], &[]).unwrap();
        assert_eq!(image[0].config.task.name(), "image");
        let e = super::cells("quick", &["aan".into()], &[], &[]).unwrap_err();
        assert!(e.to_string().contains("available: listops"), "{e}");
        assert!(super::cells("huge", &[], &[], &[]).is_err());
    }
}
