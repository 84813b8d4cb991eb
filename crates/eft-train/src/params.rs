//! A module's parameters as named f32 arrays, and back: what checkpoints and the optimizer key on.
//!
//! Names are the module's field path joined by dots (`encoder.blocks.0.attention.query.weight`),
//! stable across processes, unlike burn's random parameter ids.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

/// An f32 array with its shape, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl NamedArray {
    /// Copies a tensor's values out.
    pub fn from_tensor<const D: usize>(t: &Tensor<D>) -> Self {
        let data = t.to_data().convert::<f32>();
        Self {
            shape: data.shape().to_vec(),
            values: data.try_to_vec::<f32>().expect("converted to f32"),
        }
    }

    /// Builds a tensor on `device`.
    pub fn to_tensor<const D: usize>(&self, device: &burn::tensor::Device) -> Tensor<D> {
        Tensor::from_data(
            TensorData::new(self.values.clone(), self.shape.clone()),
            device,
        )
    }
}

/// Tracks the field path while a visitor or mapper walks a module.
#[derive(Default)]
pub(crate) struct PathStack(Vec<String>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }
    pub(crate) fn name(&self) -> String {
        self.0.join(".")
    }
}

/// Every float parameter's values, by name.
pub fn export_params<M: Module>(module: &M) -> BTreeMap<String, NamedArray> {
    struct Export {
        path: PathStack,
        out: BTreeMap<String, NamedArray>,
    }
    impl ModuleVisitor for Export {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let array = NamedArray::from_tensor(&param.val());
            self.out.insert(self.path.name(), array);
        }
    }
    let mut export = Export {
        path: PathStack::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut export);
    export.out
}

/// The gradient of every float parameter of `module` in `grads`, by the parameter's name (a
/// parameter used at several depths has one gradient, the sum over them).
pub fn export_grads<M: Module>(
    module: &M,
    grads: &GradientsParams,
) -> BTreeMap<String, NamedArray> {
    struct Export<'a> {
        grads: &'a GradientsParams,
        path: PathStack,
        out: BTreeMap<String, NamedArray>,
    }
    impl ModuleVisitor for Export<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.out
                    .insert(self.path.name(), NamedArray::from_tensor(&g));
            }
        }
    }
    let mut export = Export {
        grads,
        path: PathStack::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut export);
    export.out
}

/// Draws every lazily initialised parameter of `module` now.
///
/// burn builds parameters on first use; a caller that seeds the generator and builds a module
/// must draw them before releasing the generator, or another thread's draws could interleave.
pub fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// The global L2 norm of the gradients in `grads` of `module`'s parameters.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    square_sum(module, grads, |_| true).sqrt()
}

/// The sum of the squared gradients in `grads` of `module`'s parameters that `counted` accepts.
pub(crate) fn square_sum<M: Module>(
    module: &M,
    grads: &GradientsParams,
    counted: impl Fn(ParamId) -> bool,
) -> f64 {
    struct SumSquares<'a, F> {
        grads: &'a GradientsParams,
        counted: F,
        sum: f64,
    }
    impl<F: Fn(ParamId) -> bool> ModuleVisitor for SumSquares<'_, F> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if (self.counted)(param.id)
                && let Some(g) = self.grads.get::<D>(param.id)
            {
                self.sum += g.square().sum().into_scalar::<f64>();
            }
        }
    }
    let mut visitor = SumSquares {
        grads,
        counted,
        sum: 0.0,
    };
    module.visit(&mut visitor);
    visitor.sum
}

/// `array` as a tensor on `tensor`'s device, trained if `tensor` is.
fn replaced<const D: usize>(tensor: &Tensor<D>, array: &NamedArray) -> Tensor<D> {
    let loaded = array.to_tensor::<D>(&tensor.device());
    if tensor.is_require_grad() {
        loaded.require_grad()
    } else {
        loaded
    }
}

/// Replaces the float parameters of `module` under the path prefixes `parts` by the arrays of
/// the same name (transfer from a pretrained run): a table whose rows differ (a token or
/// position embedding of another vocabulary or length) takes the rows both have; everything
/// else keeps its initial values. Returns the module and how many parameters were copied whole
/// and in part.
///
/// # Errors
/// The problems, when a parameter under `parts` is missing from `arrays` or differs in more
/// than its rows.
pub fn transfer_params<M: Module>(
    module: M,
    arrays: &BTreeMap<String, NamedArray>,
    parts: &[&str],
) -> Result<(M, usize, usize), Vec<String>> {
    struct Transfer<'a> {
        path: PathStack,
        arrays: &'a BTreeMap<String, NamedArray>,
        parts: &'a [&'a str],
        whole: usize,
        partial: usize,
        problems: Vec<String>,
    }
    impl ModuleMapper for Transfer<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.name();
            if !self.parts.iter().any(|p| name.starts_with(p)) {
                return param;
            }
            let Some(array) = self.arrays.get(&name) else {
                // A CLS vector the pretraining model did not pool with starts fresh.
                if !name.ends_with("cls") {
                    self.problems.push(format!("`{name}` is missing"));
                }
                return param;
            };
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims().to_vec();
            if array.shape == dims {
                self.whole += 1;
                return Param::from_mapped_value(id, replaced(&tensor, array), mapper);
            }
            if array.shape.len() != D || array.shape[1..] != dims[1..] {
                self.problems.push(format!(
                    "`{name}` has shape {:?}, the model expects {dims:?}",
                    array.shape
                ));
                return Param::from_mapped_value(id, tensor, mapper);
            }
            // A table of other rows: the rows both have, the rest as initialised.
            self.partial += 1;
            let common = dims[0].min(array.shape[0]) * dims[1..].iter().product::<usize>();
            let mut values = tensor.to_data().try_to_vec::<f32>().unwrap_or_default();
            values[..common].copy_from_slice(&array.values[..common]);
            let values = NamedArray {
                shape: dims,
                values,
            };
            Param::from_mapped_value(id, replaced(&tensor, &values), mapper)
        }
    }
    let mut transfer = Transfer {
        path: PathStack::default(),
        arrays,
        parts,
        whole: 0,
        partial: 0,
        problems: Vec::new(),
    };
    let module = module.map(&mut transfer);
    if transfer.problems.is_empty() {
        Ok((module, transfer.whole, transfer.partial))
    } else {
        Err(transfer.problems)
    }
}

/// Replaces every float parameter of `module` by the array of the same name.
///
/// Returns the problems (missing names, shape mismatches, unused names) instead of a module
/// when the arrays do not fit it exactly.
pub fn import_params<M: Module>(
    module: M,
    arrays: &BTreeMap<String, NamedArray>,
) -> Result<M, Vec<String>> {
    struct Load<'a> {
        path: PathStack,
        arrays: &'a BTreeMap<String, NamedArray>,
        used: usize,
        problems: Vec<String>,
    }
    impl ModuleMapper for Load<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.name();
            let Some(array) = self.arrays.get(&name) else {
                self.problems.push(format!("`{name}` is missing"));
                return param;
            };
            self.used += 1;
            let (id, tensor, mapper) = param.consume();
            if array.shape != tensor.dims().to_vec() {
                self.problems.push(format!(
                    "`{name}` has shape {:?}, the model expects {:?}",
                    array.shape,
                    tensor.dims()
                ));
                return Param::from_mapped_value(id, tensor, mapper);
            }
            Param::from_mapped_value(id, replaced(&tensor, array), mapper)
        }
    }
    let mut load = Load {
        path: PathStack::default(),
        arrays,
        used: 0,
        problems: Vec::new(),
    };
    let module = module.map(&mut load);
    if load.used != arrays.len() {
        load.problems.push(format!(
            "{} arrays do not belong to this model",
            arrays.len() - load.used
        ));
    }
    if load.problems.is_empty() {
        Ok(module)
    } else {
        Err(load.problems)
    }
}
