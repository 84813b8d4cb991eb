//! Causal decoding of a per-position model a chunk at a time: each layer keeps its mechanism's
//! incremental state ([`AttentionCache`]: keys and values it can still see, or kernel sums), so a
//! new token costs one position's work instead of a pass over the whole context. Models that
//! have no incremental form (a mechanism without one, adaptive depth, Switch layers, early exits)
//! keep their tokens and recompute the causal pass, which gives the same outputs.

use burn::tensor::{Bool, Int, Tensor, s};
use eft_attention::AttentionCache;

use crate::{Classifier, ModelError};

/// Longest chunk run at once; longer prompts are fed in pieces so the scores of a chunk against
/// its context (`chunk × context` per head) stay small.
const MAX_CHUNK: usize = 256;

/// A batch's decoding state: what each layer keeps, and the next position.
#[derive(Debug, Clone)]
pub struct DecodeState {
    form: Form,
    position: usize,
    capacity: usize,
}

// One value per decoded batch: the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Form {
    /// One state per depth.
    Incremental(Vec<AttentionCache>),
    /// The tokens so far (`[B, t]` each), recomputed at every chunk, and why.
    Recompute {
        reason: String,
        history: Option<(Tensor<2, Int>, Tensor<2, Bool>)>,
    },
}

impl DecodeState {
    /// The position the next token takes (tokens fed so far).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The most positions this state can take.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Why the model decodes by recomputing the causal pass; `None` when it decodes
    /// incrementally.
    pub fn recompute_reason(&self) -> Option<&str> {
        match &self.form {
            Form::Incremental(_) => None,
            Form::Recompute { reason, .. } => Some(reason),
        }
    }

    /// How the model decodes, in words: its layers' state kinds, or why it recomputes.
    pub fn describe(&self) -> String {
        match &self.form {
            Form::Incremental(layers) => {
                let kv = layers
                    .iter()
                    .filter(|c| c.cached_positions().is_some())
                    .count();
                match (kv, layers.len() - kv) {
                    (_, 0) => "incremental: a key-value cache per layer".into(),
                    (0, _) => "incremental: kernel sums per layer (fixed size)".into(),
                    _ => "incremental: key-value caches and kernel sums".into(),
                }
            }
            Form::Recompute { reason, .. } => format!("recomputing the causal pass: {reason}"),
        }
    }

    /// Bytes the state holds: every layer's cache or sums (f32), or the token history (an i64
    /// token and a padding flag per position).
    pub fn bytes(&self) -> usize {
        match &self.form {
            Form::Incremental(layers) => {
                4 * layers.iter().map(AttentionCache::floats).sum::<usize>()
            }
            Form::Recompute { history, .. } => history
                .as_ref()
                .map_or(0, |(t, _)| 9 * t.shape().num_elements()),
        }
    }

    /// Positions each layer's key-value cache holds (`None` for kernel sums); empty when
    /// recomputing.
    pub fn cached_positions(&self) -> Vec<Option<usize>> {
        match &self.form {
            Form::Incremental(layers) => layers.iter().map(|c| c.cached_positions()).collect(),
            Form::Recompute { .. } => Vec::new(),
        }
    }
}

impl Classifier {
    /// An empty decoding state for sequences of up to `capacity` positions.
    ///
    /// Fails when the model is not a causal per-position model (`model.causal = true`,
    /// `model.pool = "none"`) or `capacity` exceeds its learned positions.
    pub fn decoder(&self, capacity: usize) -> Result<DecodeState, ModelError> {
        self.check_decoding(capacity)?;
        let form = match self.incremental_states(capacity) {
            Ok(layers) => Form::Incremental(layers),
            Err(reason) => Form::Recompute {
                reason,
                history: None,
            },
        };
        Ok(DecodeState {
            form,
            position: 0,
            capacity,
        })
    }

    /// A decoding state that recomputes the causal pass at every chunk even where the model
    /// has an incremental form: the baseline that incremental decoding is measured against.
    pub fn recomputing_decoder(&self, capacity: usize) -> Result<DecodeState, ModelError> {
        self.check_decoding(capacity)?;
        Ok(DecodeState {
            form: Form::Recompute {
                reason: "asked for".into(),
                history: None,
            },
            position: 0,
            capacity,
        })
    }

    fn check_decoding(&self, capacity: usize) -> Result<(), ModelError> {
        let causal = self.encoder.block(0).self_attention().causal();
        if !self.per_position || !causal {
            return Err(ModelError::Config {
                field: "causal",
                value: causal.to_string(),
                fix: "decoding needs a causal per-position model: model.causal = true and \
                      model.pool = \"none\" (a language model)"
                    .into(),
            });
        }
        if let Some(most) = self
            .embeddings
            .learned_positions()
            .filter(|&m| capacity > m)
        {
            return Err(ModelError::Config {
                field: "positions",
                value: format!("{capacity} positions asked"),
                fix: format!(
                    "the model learned {most} positions: decode at most {most}, or train with \
                     model.positions = \"sinusoidal\""
                ),
            });
        }
        Ok(())
    }

    /// One state per depth, or why the model has no incremental form.
    fn incremental_states(&self, capacity: usize) -> Result<Vec<AttentionCache>, String> {
        if !self.exits.is_empty() {
            return Err("early exits pick a depth per sequence".into());
        }
        if self.encoder.adaptive() {
            return Err("adaptive computation time halts per position over the whole pass".into());
        }
        (0..self.encoder.depth())
            .map(|depth| {
                let block = self.encoder.block(depth);
                if block.is_switch() {
                    return Err("a Switch layer's capacity depends on every token routed".into());
                }
                let attention = block.self_attention();
                attention
                    .mechanism()
                    .decode_cache(attention.heads_count(), capacity)
            })
            .collect()
    }

    /// Feeds the next `n` tokens of every sequence (`[B, n]`, padding `true`) and returns their
    /// logits, `[B, n, C]`: the rows the causal pass over everything fed so far gives them.
    ///
    /// Fails when the tokens would pass the state's capacity.
    pub fn decode(
        &self,
        state: &mut DecodeState,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, n] = tokens.dims();
        if state.position + n > state.capacity {
            return Err(ModelError::Config {
                field: "capacity",
                value: format!("{} positions", state.position + n),
                fix: format!(
                    "this decoding state holds {} positions: start a new one (with a larger \
                     capacity, or on the last part of the text)",
                    state.capacity
                ),
            });
        }
        let start = state.position;
        state.position += n;
        let logits = match &mut state.form {
            Form::Incremental(layers) => {
                let pieces = (0..n)
                    .step_by(MAX_CHUNK)
                    .map(|from| {
                        let to = (from + MAX_CHUNK).min(n);
                        self.decode_chunk(
                            layers,
                            tokens.clone().slice(s![.., from..to]),
                            padding.clone().slice(s![.., from..to]),
                            start + from,
                        )
                    })
                    .collect();
                Tensor::cat(pieces, 1)
            }
            Form::Recompute { history, .. } => {
                let (all, pad) = match history.take() {
                    None => (tokens, padding),
                    Some((t, p)) => (
                        Tensor::cat(vec![t, tokens], 1),
                        Tensor::cat(vec![p, padding], 1),
                    ),
                };
                let logits = self.forward(all.clone(), pad.clone()).logits;
                *history = Some((all, pad));
                let classes = logits.dims()[1];
                let total = start + n;
                logits
                    .reshape([batch, total, classes])
                    .slice(s![.., start..total, ..])
            }
        };
        Ok(logits)
    }

    /// One chunk through every layer's incremental state.
    fn decode_chunk(
        &self,
        layers: &mut [AttentionCache],
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        start: usize,
    ) -> Tensor<3> {
        let [batch, n] = tokens.dims();
        let (mut x, padding) = self.embeddings.forward_from(tokens, padding, start);
        for (depth, cache) in layers.iter_mut().enumerate() {
            x = self
                .encoder
                .block(depth)
                .decode(x, padding.clone(), cache, start);
        }
        let logits = self.head(self.encoder.finish(x), padding).logits;
        let classes = logits.dims()[1];
        logits.reshape([batch, n, classes])
    }
}
