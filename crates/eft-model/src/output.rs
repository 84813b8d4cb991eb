//! What a forward pass returns: the logits, and the channels other parts of a model report
//! through (auxiliary losses such as a mixture-of-experts balance term, per-layer statistics
//! such as dropped tokens or ponder steps). Both are empty for the dense encoder.

use burn::tensor::Tensor;

use crate::{EncoderReport, SwitchReport};

/// The classifier's output for one batch.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Class logits; see [`crate::Classifier::forward`] for the shape.
    pub logits: Tensor<2>,
    /// Named auxiliary losses, each a one-element tensor already weighted; the trainer adds them
    /// to the task loss and records their means.
    pub aux_losses: Vec<(String, Tensor<1>)>,
    /// Named statistics with one value per layer; the trainer records their means.
    pub layer_stats: Vec<(String, Vec<f64>)>,
    /// Forward FLOPs the model's analytic cost counts that this pass did not execute (tokens a
    /// Switch layer dropped, padding it did not route); 0 for the dense encoder.
    pub skipped_flops: f64,
    /// Logits of the exits before the last layer, in layer order (`model.exits`); empty
    /// without exits.
    pub exit_logits: Vec<Tensor<2>>,
    /// Learned exits: the depth classifier's scores `[B, n_layers]` and the price of a layer in
    /// the oracle depth.
    pub depth_logits: Option<(Tensor<2>, f64)>,
}

impl ModelOutput {
    /// Logits with nothing else to report.
    pub fn new(logits: Tensor<2>) -> Self {
        Self {
            logits,
            aux_losses: Vec::new(),
            layer_stats: Vec::new(),
            skipped_flops: 0.0,
            exit_logits: Vec::new(),
            depth_logits: None,
        }
    }

    /// Learned exits: the depth classifier's cross-entropy against each sequence's oracle depth
    /// ([`crate::oracle_depths`] of every head's per-sequence loss from `per_row`, without
    /// gradient). `None` without a depth classifier.
    pub fn depth_loss(&self, per_row: impl Fn(Tensor<2>) -> Tensor<1>) -> Option<Tensor<1>> {
        let (scores, penalty) = self.depth_logits.as_ref()?;
        let losses: Vec<Vec<f64>> = self
            .exit_logits
            .iter()
            .chain(std::iter::once(&self.logits))
            .map(|l| {
                per_row(l.clone().detach())
                    .into_data()
                    .iter::<f64>()
                    .collect()
            })
            .collect();
        let depths = crate::oracle_depths(&losses, *penalty);
        let [rows, _] = scores.dims();
        let targets = Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(
                depths.iter().map(|&n| n as i64 - 1).collect(),
                [rows, 1],
            ),
            &scores.device(),
        );
        let log_probs = burn::tensor::activation::log_softmax(crate::in_f32(scores.clone()), 1);
        Some(-log_probs.gather(1, targets).mean())
    }

    /// The task loss `loss` gives the logits, averaged over every exit when the model has
    /// several (each layer's head trained equally).
    pub fn task_loss(&self, loss: impl Fn(Tensor<2>) -> Tensor<1>) -> Tensor<1> {
        let last = loss(self.logits.clone());
        if self.exit_logits.is_empty() {
            return last;
        }
        let heads = (self.exit_logits.len() + 1) as f64;
        let sum = self
            .exit_logits
            .iter()
            .fold(last, |total, l| total + loss(l.clone()));
        sum / heads
    }

    /// Adds what the encoder's conditional parts report: see [`ModelOutput::with_switch_reports`];
    /// under adaptive computation time the ponder cost (`ponder`), the mean steps per position
    /// (`act_steps`), per sequence (`act_steps_per_sequence`) and the steps the batch ran
    /// (`act_steps_run`), each a one-entry statistic (the whole stack), and the FLOPs not run.
    pub(crate) fn with_report(mut self, report: EncoderReport) -> Self {
        if let Some(act) = report.act {
            self.aux_losses.push(("ponder".into(), act.ponder));
            self.layer_stats
                .push(("act_steps".into(), vec![act.mean_steps]));
            self.layer_stats
                .push(("act_steps_run".into(), vec![act.steps_run as f64]));
            self.layer_stats.push((
                "act_steps_per_sequence".into(),
                vec![act.sequence_steps as f64 / act.sequences.max(1) as f64],
            ));
            self.skipped_flops += act.skipped_flops;
        }
        self.with_switch_reports(report.switch)
    }

    /// Adds what the encoder's Switch layers report (one entry per depth, `None` for a dense
    /// layer): the balance and z-losses summed over layers, the fraction of tokens each layer
    /// dropped (0 for dense layers), and the FLOPs they skipped.
    pub(crate) fn with_switch_reports(mut self, reports: Vec<Option<SwitchReport>>) -> Self {
        let layers: Vec<&SwitchReport> = reports.iter().flatten().collect();
        let Some(first) = layers.first() else {
            return self;
        };
        let sum = |pick: fn(&SwitchReport) -> Tensor<1>| {
            layers[1..]
                .iter()
                .fold(pick(first), |total, r| total + pick(r))
        };
        self.aux_losses
            .push(("balance".into(), sum(|r| r.balance.clone())));
        self.aux_losses
            .push(("router_z".into(), sum(|r| r.z_loss.clone())));
        let dropped = reports
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(0.0, |r| r.dropped as f64 / r.tokens.max(1) as f64)
            })
            .collect();
        self.layer_stats.push(("dropped_fraction".into(), dropped));
        self.skipped_flops += layers.iter().map(|r| r.skipped_flops).sum::<f64>();
        self
    }

    /// The task loss plus every auxiliary loss.
    pub fn total_loss(&self, task_loss: Tensor<1>) -> Tensor<1> {
        self.aux_losses
            .iter()
            .fold(task_loss, |total, (_, aux)| total + aux.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// With exits, every head's loss counts equally: the mean over the heads.
    #[test]
    fn exit_heads_share_the_task_loss_equally() {
        let device = Device::flex();
        let logits = |v: f32| Tensor::<2>::full([1, 2], v, &device);
        let mut out = ModelOutput::new(logits(3.0));
        let loss = |l: Tensor<2>| l.sum().reshape([1]);
        assert_eq!(out.task_loss(loss).into_scalar::<f32>(), 6.0);
        out.exit_logits = vec![logits(1.0), logits(2.0)];
        assert_eq!(out.task_loss(loss).into_scalar::<f32>(), 4.0);
    }

    #[test]
    fn auxiliary_losses_add_to_the_task_loss() {
        let device = Device::flex();
        let one = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &device);
        let mut out = ModelOutput::new(Tensor::zeros([1, 2], &device));
        assert_eq!(out.total_loss(one(1.5)).into_scalar::<f32>(), 1.5);
        out.aux_losses.push(("balance".into(), one(0.25)));
        out.aux_losses.push(("z".into(), one(0.125)));
        assert_eq!(out.total_loss(one(1.5)).into_scalar::<f32>(), 1.875);
    }
}
