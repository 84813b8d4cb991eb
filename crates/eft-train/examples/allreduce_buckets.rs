//! Times the data-parallel gradient sum of a preset's model under `mpirun`: the trainer's flat
//! buffer as one MPI all-reduce or in pieces of a fixed size, against buckets of consecutive
//! parameter tensors (PyTorch DDP's form) and one all-reduce per tensor, the same values either
//! way. Rank 0 prints a Markdown table.
//!
//! ```sh
//! cargo build --release -p eft-train --features mpi --example allreduce_buckets
//! mpirun -np 2 target/release/examples/allreduce_buckets [TASK [PRESET]]
//! ```

use std::time::Instant;

use burn::tensor::Device;
use eft_train::parallel::Collective;
use eft_train::parallel_mpi::{MpiWorld, PIECE};

/// Steps timed per strategy and round (after as many untimed): about this many values summed,
/// between 5 and 200 steps.
const VALUES_PER_ROUND: usize = 50_000_000;
/// Rounds, each timing every strategy in turn.
const ROUNDS: usize = 5;

/// Consecutive tensors (of `sizes` values) packed into buckets of at least `bucket` values.
fn buckets(sizes: &[usize], bucket: usize) -> Vec<usize> {
    let mut out = vec![0];
    for &n in sizes {
        if *out.last().expect("one bucket") >= bucket {
            out.push(0);
        }
        *out.last_mut().expect("one bucket") += n;
    }
    out
}

/// One buffer of `total` values cut into pieces of at most `most`.
fn pieces(total: usize, most: usize) -> Vec<usize> {
    (0..total)
        .step_by(most)
        .map(|at| most.min(total - at))
        .collect()
}

/// Mean seconds of one step's sums, each entry of `plan` one MPI all-reduce.
fn step_seconds(world: &MpiWorld, plan: &[usize], steps: usize) -> f64 {
    let mut buffers: Vec<Vec<f32>> = plan.iter().map(|&n| vec![1.0; n]).collect();
    let mut sync = [0.0f32];
    let run = |buffers: &mut Vec<Vec<f32>>| {
        for b in buffers.iter_mut() {
            world.all_reduce_in_pieces(b, usize::MAX);
        }
    };
    for _ in 0..steps {
        run(&mut buffers);
    }
    world
        .all_reduce_sum(&mut sync)
        .expect("MPI aborts on failure");
    let started = Instant::now();
    for _ in 0..steps {
        run(&mut buffers);
    }
    started.elapsed().as_secs_f64() / steps as f64
}

fn main() {
    let world = MpiWorld::init().expect("MPI is initialised once");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map_or("listops", String::as_str);
    let preset = args.get(1).map_or("quick", String::as_str);
    let config = eft_train::preset(task, preset).expect("a known task and preset");
    let model = eft_train::build_model(&config, &Device::flex()).expect("the preset builds");
    // Each tensor's values and the presence flag the trainer sends with it.
    let sizes: Vec<usize> = eft_train::params::export_params(&model)
        .values()
        .map(|a| a.values.len() + 1)
        .collect();
    let total: usize = sizes.iter().sum();
    let plans = [
        ("one flat buffer, one all-reduce", vec![total]),
        (
            "buckets of ≥ 64 Ki values (256 KiB)",
            buckets(&sizes, 1 << 16),
        ),
        (
            "buckets of ≥ 16 Ki values (64 KiB)",
            buckets(&sizes, 1 << 14),
        ),
        ("one per parameter tensor", sizes.clone()),
        ("pieces of ≤ 8 Ki values (32 KiB)", pieces(total, 1 << 13)),
        ("pieces of ≤ 16 Ki values (64 KiB)", pieces(total, 1 << 14)),
        (
            "pieces of ≤ 32 Ki values (128 KiB): eft's",
            pieces(total, PIECE),
        ),
        ("pieces of ≤ 48 Ki values (192 KiB)", pieces(total, 3 << 14)),
    ];
    let steps = (VALUES_PER_ROUND / total).clamp(5, 200);
    let mut times = vec![Vec::new(); plans.len()];
    for _ in 0..ROUNDS {
        for (i, (_, plan)) in plans.iter().enumerate() {
            times[i].push(step_seconds(&world, plan, steps));
        }
    }
    if world.rank() > 0 {
        return;
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!(
        "{task} {preset}: {} ranks, {} values ({:.2} MiB of f32) in {} tensors; median over {ROUNDS} \
         rounds of {steps} steps each\n",
        world.size(),
        total,
        4.0 * total as f64 / f64::from(1 << 20),
        sizes.len()
    );
    println!("| strategy | sums per step | ms per step | vs one buffer |");
    println!("|---|---:|---:|---:|");
    for ((label, plan), t) in plans.iter().zip(&medians) {
        println!(
            "| {label} | {} | {:.3} | {:.2}× |",
            plan.len(),
            1e3 * t,
            t / medians[0]
        );
    }
}
