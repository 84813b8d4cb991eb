//! Named starting configurations: `quick` (a CPU in minutes) and `paper` (LRA's released config).

use eft_data::copying::{CopyingConfig, InductionConfig};
use eft_data::lm::{LmConfig, LmCorpus};
use eft_data::mlm::MlmConfig;
use eft_data::mqar::MqarConfig;
use eft_data::pathfinder::PathfinderConfig;
use eft_data::retrieval::RetrievalConfig;
use eft_data::{TaskConfig, image::ImageConfig, listops::ListOpsConfig, text::TextConfig};
use eft_model::{ModelConfig, Pool};

use crate::{OptimizerConfig, Precision, RunConfig, Schedule, TrainConfig, TrainError};

/// The presets every task offers.
pub const PRESETS: &[&str] = &["quick", "paper"];

/// The presets task `task` offers: every task's, and `lite` for `lm`.
pub fn presets_for(task: &str) -> &'static [&'static str] {
    match task {
        "lm" => &["quick", "lite", "paper"],
        _ => PRESETS,
    }
}

/// The preset `preset` for task `task`.
pub fn preset(task: &str, preset: &str) -> Result<RunConfig, TrainError> {
    match (task, preset) {
        ("listops", "quick") => Ok(listops_quick()),
        ("listops", "paper") => Ok(listops_paper()),
        ("image", "quick") => Ok(image_quick()),
        ("image", "paper") => Ok(image_paper()),
        ("text", "quick") => Ok(text_quick()),
        ("text", "paper") => Ok(text_paper()),
        ("pathfinder", "quick") => Ok(pathfinder_quick()),
        ("pathfinder", "paper") => Ok(pathfinder_paper()),
        ("pathx", "quick") => Ok(pathx_quick()),
        ("pathx", "paper") => Ok(pathx_paper()),
        ("retrieval", "quick") => Ok(retrieval_quick()),
        ("retrieval", "paper") => Ok(retrieval_paper()),
        ("mqar", "quick") => Ok(mqar_quick()),
        ("mqar", "paper") => Ok(mqar_paper()),
        ("copying", "quick") => Ok(copying("quick", 64, 8, 2_000)),
        ("copying", "paper") => Ok(copying("paper", 4_096, 16, 100_000)),
        ("induction", "quick") => Ok(induction("quick", 64, 2_000)),
        ("induction", "paper") => Ok(induction("paper", 256, 100_000)),
        ("lm", "quick") => Ok(lm_quick()),
        ("lm", "lite") => Ok(lm_lite()),
        ("lm", "paper") => Ok(lm_paper()),
        ("mlm", "quick") => Ok(mlm_quick()),
        ("mlm", "paper") => Ok(mlm(text_paper(), "paper", 1_000, 100_000)),
        (t, _) if !TaskConfig::NAMES.contains(&t) => Err(TrainError::config(
            "task",
            t,
            format!(
                "unknown task; known tasks: {}",
                TaskConfig::NAMES.join(", ")
            ),
        )),
        (t, p) => Err(TrainError::config(
            "preset",
            p,
            format!(
                "unknown preset for task {t}; known presets: {}",
                presets_for(t).join(", ")
            ),
        )),
    }
}

/// ListOps scaled to a 2-core CPU: shallow trees of 10–100 tokens and a 2-layer, 64-wide model.
/// It keeps what makes ListOps hard (nesting, four operators, ten skewed classes).
fn listops_quick() -> RunConfig {
    RunConfig {
        name: "listops-quick".into(),
        seed: 0,
        task: TaskConfig::ListOps(ListOpsConfig {
            min_len: 10,
            max_len: 100,
            max_depth: 4,
            max_args: 5,
            train: 20_000,
            val: 500,
            test: 1_000,
        }),
        model: ModelConfig::default(),
        train: TrainConfig {
            steps: 1_500,
            batch_size: 32,
            eval_every: 250,
            checkpoint_every: 250,
            log_every: 10,
            precision: Precision::F32,
            max_grad_norm: Some(1.0),
            init_from: None,
            init_step: None,
            keep_at: Vec::new(),
            prune: None,
            distill: None,
            electra: None,
            per_example_dropout: false,
            replica: 0,
            optimizer: OptimizerConfig {
                weight_decay: 0.01,
                ..OptimizerConfig::default()
            },
            schedule: Schedule::Cosine {
                lr: 1e-3,
                warmup: 100,
                min_lr: 1e-5,
            },
        },
        meter: Default::default(),
    }
}

/// LRA's released ListOps config: 4 layers, width 512, 8 heads, MLP 1024, length 2000, batch 32,
/// 5k steps, Adam(0.9, 0.98, 1e-9), rsqrt lr 0.05 with 1000 warmup, weight decay 0.1, CLS.
fn listops_paper() -> RunConfig {
    RunConfig {
        name: "listops-paper".into(),
        seed: 0,
        task: TaskConfig::ListOps(ListOpsConfig::default()),
        model: ModelConfig {
            d_model: 512,
            n_heads: 8,
            n_layers: 4,
            d_ff: 1024,
            ..ModelConfig::default()
        },
        train: TrainConfig {
            steps: 5_000,
            batch_size: 32,
            eval_every: 500,
            checkpoint_every: 500,
            log_every: 10,
            precision: Precision::F32,
            max_grad_norm: None,
            init_from: None,
            init_step: None,
            keep_at: Vec::new(),
            prune: None,
            distill: None,
            electra: None,
            per_example_dropout: false,
            replica: 0,
            optimizer: OptimizerConfig {
                weight_decay: 0.1,
                ..OptimizerConfig::default()
            },
            schedule: Schedule::Rsqrt {
                lr: 0.05,
                warmup: 1000,
            },
        },
        meter: Default::default(),
    }
}

/// MNIST digits averaged to 14×14 (196 tokens), 5k training images, the quick model; a CPU in
/// minutes.
fn image_quick() -> RunConfig {
    let mut c = listops_quick();
    c.name = "image-quick".into();
    c.task = TaskConfig::Image(ImageConfig {
        size: 14,
        train: 5_000,
        val: 500,
        test: 1_000,
        cifar10: None,
    });
    c.train.set_steps(400, 100);
    c
}

/// LRA's Image config on MNIST padded to 32×32 (1024 tokens): 1 layer, width 128, 8 heads, MLP
/// 128, batch 256, cosine 5e-4, about 200 epochs of 55k images.
fn image_paper() -> RunConfig {
    let mut c = listops_paper();
    c.name = "image-paper".into();
    c.task = TaskConfig::Image(ImageConfig {
        size: 32,
        train: 55_000,
        val: 5_000,
        test: 10_000,
        cifar10: None,
    });
    c.model.d_model = 128;
    c.model.n_heads = 8;
    c.model.n_layers = 1;
    c.model.d_ff = 128;
    c.train.batch_size = 256;
    c.train.set_steps(43_000, 1_000);
    c.train.schedule = Schedule::Cosine {
        lr: 5e-4,
        warmup: 1_000,
        min_lr: 0.0,
    };
    c
}

/// Byte-level IMDb cut to the first 256 bytes, 5k reviews, the quick model.
fn text_quick() -> RunConfig {
    let mut c = listops_quick();
    c.name = "text-quick".into();
    c.task = TaskConfig::Text(TextConfig {
        max_len: 256,
        train: 5_000,
        val: 500,
        test: 1_000,
    });
    c.train.set_steps(400, 100);
    c
}

/// LRA's Text config: 4 layers, width 256, 4 heads, MLP 1024, 1000 bytes, batch 32, 20k steps,
/// rsqrt 0.05 with 8000 warmup, weight decay 0.1, CLS.
fn text_paper() -> RunConfig {
    let mut c = listops_paper();
    c.name = "text-paper".into();
    c.task = TaskConfig::Text(TextConfig {
        max_len: 1000,
        train: 22_500,
        val: 2_500,
        test: 25_000,
    });
    c.model.d_model = 256;
    c.model.n_heads = 4;
    c.model.d_ff = 1024;
    c.train.set_steps(20_000, 1_000);
    c.train.schedule = Schedule::Rsqrt {
        lr: 0.05,
        warmup: 8_000,
    };
    c
}

/// Document matching on Brown passages of 128 bytes, 5k pairs, the quick model in two towers.
fn retrieval_quick() -> RunConfig {
    let mut c = listops_quick();
    c.name = "retrieval-quick".into();
    c.task = TaskConfig::Retrieval(RetrievalConfig {
        passage_len: 128,
        train: 5_000,
        val: 500,
        test: 1_000,
        negatives: Default::default(),
    });
    c.train.set_steps(400, 100);
    c
}

/// LRA's Retrieval config on the Brown substitute: passages of 4000 bytes, 4 layers, width 128,
/// 4 heads, MLP 512, batch 32, 5k steps, rsqrt 0.05, weight decay 0.1, CLS.
fn retrieval_paper() -> RunConfig {
    let mut c = listops_paper();
    c.name = "retrieval-paper".into();
    c.task = TaskConfig::Retrieval(RetrievalConfig {
        passage_len: 4_000,
        train: 147_086,
        val: 18_090,
        test: 17_437,
        negatives: Default::default(),
    });
    c.model.d_model = 128;
    c.model.n_heads = 4;
    c.model.d_ff = 512;
    c
}

/// Pathfinder with `contour` paddles at `size` pixels; quick sizes close the gaps between paddles
/// (margin 0) so two snakes still fit a small image.
fn pathfinder_task(size: usize, contour: usize, train: usize, held_out: usize) -> PathfinderConfig {
    let mut task = PathfinderConfig::lra32(contour, train, held_out, held_out);
    task.size = size;
    if size < 32 {
        task.geometry.margin = Some(0.0);
    }
    task
}

/// Pathfinder at 16×16 (256 tokens), easy snakes of 6 paddles, the quick model with mean pooling.
fn pathfinder_quick() -> RunConfig {
    let mut c = listops_quick();
    c.name = "pathfinder-quick".into();
    c.task = TaskConfig::Pathfinder(pathfinder_task(16, 6, 5_000, 500));
    c.model.pool = Pool::Mean;
    c.train.set_steps(400, 100);
    c
}

/// LRA's Pathfinder-32 config at the hard level (14 paddles): 4 layers, width 32, 4 heads, MLP 32,
/// mean pooling, batch 512, cosine 1e-3, 200 epochs of 160k images.
fn pathfinder_paper() -> RunConfig {
    let mut c = listops_paper();
    c.name = "pathfinder-paper".into();
    c.task = TaskConfig::Pathfinder(pathfinder_task(32, 14, 160_000, 20_000));
    c.model.d_model = 32;
    c.model.n_heads = 4;
    c.model.d_ff = 32;
    c.model.pool = Pool::Mean;
    c.train.batch_size = 512;
    c.train.set_steps(62_500, 2_500);
    c.train.schedule = Schedule::Cosine {
        lr: 1e-3,
        warmup: 1_000,
        min_lr: 0.0,
    };
    c
}

/// Path-X scaled to a CPU: hard snakes (14 paddles) at 24×24 (576 tokens), the quick model.
fn pathx_quick() -> RunConfig {
    let mut c = pathfinder_quick();
    c.name = "pathx-quick".into();
    c.task = TaskConfig::PathX(pathfinder_task(24, 14, 5_000, 500));
    c
}

/// LRA's Path-X config: 128×128 (16,384 tokens), 1 layer, width 32, 2 heads, MLP 32, batch 64,
/// cosine 1e-3, gradient clipping 1.
fn pathx_paper() -> RunConfig {
    let mut c = pathfinder_paper();
    c.name = "pathx-paper".into();
    let task = pathfinder_task(128, 14, 160_000, 20_000);
    c.task = TaskConfig::PathX(task);
    c.model.n_layers = 1;
    c.model.n_heads = 2;
    c.train.batch_size = 64;
    c.train.max_grad_norm = Some(1.0);
    c.train.set_steps(500_000, 10_000);
    c
}

/// MQAR with 8 pairs in 64 tokens (vocabulary 128), the quick model reading every position.
fn mqar_quick() -> RunConfig {
    let mut c = listops_quick();
    c.name = "mqar-quick".into();
    c.task = TaskConfig::Mqar(MqarConfig {
        len: 64,
        pairs: 8,
        vocab: 128,
        train: 5_000,
        val: 200,
        test: 500,
    });
    c.model.pool = Pool::None;
    c.train.set_steps(400, 100);
    c
}

/// A Zoology-sized MQAR: 64 pairs in 256 tokens from a vocabulary of 8192, 100k training
/// sequences, 2 layers of width 128, batch 64, cosine 1e-3.
fn mqar_paper() -> RunConfig {
    let mut c = mqar_quick();
    c.name = "mqar-paper".into();
    c.task = TaskConfig::Mqar(MqarConfig {
        len: 256,
        pairs: 64,
        vocab: 8_192,
        train: 100_000,
        val: 3_000,
        test: 3_000,
    });
    c.model.d_model = 128;
    c.model.d_ff = 256;
    c.train.batch_size = 64;
    c.train.set_steps(20_000, 1_000);
    c
}

/// Byte-level language modelling at 128 bytes with the quick model made causal, predicting every
/// next byte: 20,000 training windows, 600 steps of batch 32 (a CPU in a few minutes).
fn lm_quick() -> RunConfig {
    let mut c = mqar_quick();
    c.name = "lm-quick".into();
    c.task = TaskConfig::Lm(LmConfig {
        len: 128,
        train: 20_000,
        val: 200,
        test: 500,
        corpus: LmCorpus::Imdb,
    });
    c.model.causal = true;
    c.train.set_steps(600, 200);
    c
}

/// Language modelling at 512 bytes with the quick model, 3,000 steps: longer contexts than
/// quick, still a CPU's job (about ten minutes with `full` here).
fn lm_lite() -> RunConfig {
    let mut c = lm_quick();
    c.name = "lm-lite".into();
    c.task = TaskConfig::Lm(LmConfig {
        len: 512,
        train: 50_000,
        val: 200,
        test: 500,
        corpus: LmCorpus::Imdb,
    });
    c.train.set_steps(3_000, 500);
    c
}

/// Language modelling at 1024 bytes, 4 layers of width 256 (a GPU's job).
fn lm_paper() -> RunConfig {
    let mut c = lm_quick();
    c.name = "lm-paper".into();
    c.task = TaskConfig::Lm(LmConfig {
        len: 1024,
        train: 200_000,
        val: 1_000,
        test: 2_000,
        corpus: LmCorpus::Imdb,
    });
    c.model.d_model = 256;
    c.model.n_heads = 4;
    c.model.n_layers = 4;
    c.model.d_ff = 1024;
    c.train.batch_size = 32;
    c.train.set_steps(50_000, 2_000);
    c
}

/// Selective copying of `tokens` data tokens from a vocabulary of 16 in `len` positions (the
/// Mamba paper's `paper` setting: 4096 and 16), the quick model reading every position.
fn copying(preset: &str, len: usize, tokens: usize, steps: usize) -> RunConfig {
    let mut c = mqar_quick();
    c.name = format!("copying-{preset}");
    c.task = TaskConfig::Copying(CopyingConfig {
        len,
        tokens,
        vocab: 16,
        train: 5_000,
        val: 200,
        test: 500,
    });
    c.train.set_steps(steps, steps / 4);
    c
}

/// Induction heads over `len` tokens from a vocabulary of 16 (Mamba trains at 256).
fn induction(preset: &str, len: usize, steps: usize) -> RunConfig {
    let mut c = mqar_quick();
    c.name = format!("induction-{preset}");
    c.task = TaskConfig::Induction(InductionConfig {
        len,
        vocab: 16,
        train: 5_000,
        val: 200,
        test: 500,
    });
    c.train.set_steps(steps, steps / 4);
    c
}

/// Masked-byte pretraining with `text`'s model on windows of `len` bytes, so a pretrained run
/// fine-tunes on Text with `train.init_from`; `steps` steps.
fn mlm(text: RunConfig, preset: &str, len: usize, steps: usize) -> RunConfig {
    let mut c = text;
    c.name = format!("mlm-{preset}");
    c.task = TaskConfig::Mlm(MlmConfig {
        len,
        train: 50_000,
        val: 200,
        test: 1_000,
        mask_rate: 0.15,
    });
    c.model.pool = Pool::None;
    c.train.set_steps(steps, steps / 5);
    c
}

/// The quick model at the quick arena's Text length (64 bytes), 10,000 steps at 3e-3: byte-level
/// MLM sits at the unigram level for its first ~4,500 steps here, then learns.
fn mlm_quick() -> RunConfig {
    let mut c = mlm(text_quick(), "quick", 64, 10_000);
    c.train.schedule = Schedule::Cosine {
        lr: 3e-3,
        warmup: 200,
        min_lr: 1e-5,
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_validates_and_round_trips_through_toml() {
        for task in TaskConfig::NAMES {
            for p in presets_for(task) {
                let c = preset(task, p).unwrap();
                c.validate().unwrap();
                assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
            }
        }
    }

    #[test]
    fn mqar_needs_per_position_pooling_and_only_mqar_has_it() {
        let mut c = preset("mqar", "quick").unwrap();
        c.model.pool = Pool::Mean;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("model.pool") && e.contains("\"none\""), "{e}");
        let mut c = preset("listops", "quick").unwrap();
        c.model.pool = Pool::None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("only mqar"), "{e}");
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let e = preset("listopz", "quick").unwrap_err().to_string();
        assert!(e.contains("listopz") && e.contains("listops"), "{e}");
        let e = preset("listops", "fast").unwrap_err().to_string();
        assert!(e.contains("quick, paper"), "{e}");
    }
}
