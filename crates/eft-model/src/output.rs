//! What a forward pass returns: the logits, and the channels other parts of a model report
//! through (auxiliary losses such as a mixture-of-experts balance term, per-layer statistics
//! such as dropped tokens or ponder steps). Both are empty for the dense encoder.

use burn::tensor::Tensor;

use crate::SwitchReport;

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
}

impl ModelOutput {
    /// Logits with nothing else to report.
    pub fn new(logits: Tensor<2>) -> Self {
        Self {
            logits,
            aux_losses: Vec::new(),
            layer_stats: Vec::new(),
            skipped_flops: 0.0,
        }
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
