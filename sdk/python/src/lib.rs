//! `flagstaff._native`: Flagstaff's engine (`flagstaff-eval`, the code the server runs) for
//! Python. One [`Engine`] is one compiled bundle: the Python client (`flagstaff.Client`)
//! swaps a new one in for each configuration it receives, and every read is one call into it.
//!
//! Nothing here does I/O, starts a thread or takes a lock: the network, the cache file and the
//! background threads are the Python package's, so that a process forked by a pre-fork server
//! (gunicorn, uWSGI) inherits plain memory and nothing half-held. Evaluation counts are atomic
//! counters per (flag, variation), drained by the client's event thread.

use std::sync::atomic::{AtomicU64, Ordering};

use flagstaff_eval::{CompiledEnvironment, Context, Evaluation, Fingerprints, Value, parse_bundle};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

/// Deepest nesting of a context converted from Python; deeper parts (or a list holding itself)
/// are left out rather than followed.
const MAX_DEPTH: usize = 32;

/// One compiled bundle with the evaluation counters of its flags.
#[pyclass(frozen, module = "flagstaff._native")]
struct Engine {
    env: CompiledEnvironment,
    project: String,
    environment: String,
    revision: u64,
    /// A hash of each flag's definition, to tell which flags a new bundle changed.
    fingerprints: Fingerprints,
    /// For each flag, by its position in the environment, where its counters start.
    first_counter: Box<[usize]>,
    /// One counter per (flag, variation), incremented by reads, drained by the event thread.
    counters: Box<[AtomicU64]>,
}

impl Engine {
    fn build(bytes: &[u8]) -> Result<Engine, String> {
        let bundle = parse_bundle(bytes).map_err(|e| format!("not a bundle: {e}"))?;
        let env = CompiledEnvironment::from_bundle(&bundle);
        let fingerprints = Fingerprints::of(&bundle.flags);
        let mut first_counter = Vec::with_capacity(env.len());
        let mut total = 0;
        for flag in env.flags() {
            first_counter.push(total);
            total += flag.variations().len();
        }
        Ok(Engine {
            project: bundle.project.key.clone(),
            environment: bundle.environment.clone(),
            revision: bundle.revision,
            env,
            fingerprints,
            first_counter: first_counter.into(),
            counters: (0..total).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Counts one evaluation that served a variation.
    #[inline]
    fn count(&self, key: &str, evaluation: &Evaluation<'_>) {
        if let (Some(variation), Some(position)) = (evaluation.variation, self.env.position(key)) {
            self.counters[self.first_counter[position] + variation].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Evaluates and counts; `None` when `key` is not a string.
    #[inline]
    fn served<'a>(&'a self, key: &'a str, context: &Bound<'_, PyAny>) -> Option<&'a Value> {
        let evaluation = self.env.evaluate(key, &to_context(context));
        let value = evaluation.value?;
        self.count(key, &evaluation);
        Some(value)
    }
}

#[pymethods]
impl Engine {
    /// Parses and compiles the bytes of a bundle (`GET /sdk/v1/bundle`); `ValueError` when they
    /// are not one.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Engine> {
        // Compiling a large bundle takes milliseconds: let other threads run meanwhile.
        py.detach(|| Engine::build(data)).map_err(PyValueError::new_err)
    }

    /// The project's key.
    #[getter]
    fn project(&self) -> &str {
        &self.project
    }

    /// The environment's key.
    #[getter]
    fn environment(&self) -> &str {
        &self.environment
    }

    /// The environment's revision this bundle holds.
    #[getter]
    fn revision(&self) -> u64 {
        self.revision
    }

    fn __len__(&self) -> usize {
        self.env.len()
    }

    /// The keys of every flag and config, sorted.
    fn flag_keys(&self) -> Vec<String> {
        self.env.flags().map(|f| f.key().to_owned()).collect()
    }

    /// The value of `key` if it is a boolean, else `default`. Counted when served.
    fn bool_value<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
    ) -> Bound<'py, PyAny> {
        let Some(key) = flag_key(key) else {
            return default;
        };
        match self.typed(&key, context, Value::is_boolean) {
            Some(Value::Bool(b)) => PyBool::new(key_py(&default), *b).to_owned().into_any(),
            _ => default,
        }
    }

    /// The value of `key` if it is a string, else `default`. Counted when served.
    fn string_value<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
    ) -> Bound<'py, PyAny> {
        let Some(key) = flag_key(key) else {
            return default;
        };
        match self.typed(&key, context, Value::is_string) {
            Some(Value::String(s)) => PyString::new(key_py(&default), s).into_any(),
            _ => default,
        }
    }

    /// The value of `key` as a float if it is a number, else `default`. Counted when served.
    fn number_value<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
    ) -> Bound<'py, PyAny> {
        let Some(key) = flag_key(key) else {
            return default;
        };
        match self
            .typed(&key, context, Value::is_number)
            .and_then(Value::as_f64)
        {
            Some(n) => PyFloat::new(key_py(&default), n).into_any(),
            None => default,
        }
    }

    /// The value of `key` whatever its type (a new object each time), else `default`. Counted
    /// when served.
    fn json_value<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
    ) -> Bound<'py, PyAny> {
        let Some(key) = flag_key(key) else {
            return default;
        };
        match self.served(&key, context) {
            Some(value) => to_python(key_py(&default), value),
            None => default,
        }
    }

    /// `(value, variant, reason, error_code, rule_id, prerequisite, version)` for `key`.
    /// Counted when a value is served, unless `count` is false.
    #[pyo3(signature = (key, context, count = true))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        context: &Bound<'py, PyAny>,
        count: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let evaluation = self.env.evaluate(key, &to_context(context));
        if count {
            self.count(key, &evaluation);
        }
        evaluation_tuple(py, &evaluation, false)
    }

    /// Counts one evaluation of `key` that served `variant` (after `evaluate(…, count=False)`,
    /// once the caller accepted the value). Unknown keys and variants are ignored.
    fn count_served(&self, key: &str, variant: &str) {
        if let Some(position) = self.env.position(key)
            && let Some(flag) = self.env.flags().nth(position)
            && let Some(i) = flag.variations().position(|(v, _)| v == variant)
        {
            self.counters[self.first_counter[position] + i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every flag evaluated for `context`, sorted by key, each as
    /// `(key, value, variant, reason, error_code, rule_id, prerequisite, version)`. Not counted.
    fn evaluate_all<'py>(
        &self,
        py: Python<'py>,
        context: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let context = to_context(context);
        let all = PyList::empty(py);
        for evaluation in self.env.evaluate_all(&context, |_| true) {
            all.append(evaluation_tuple(py, &evaluation, true)?)?;
        }
        Ok(all)
    }

    /// The keys of the flags added, changed or removed from `old` to this bundle, sorted.
    fn changed_since(&self, old: &Engine) -> Vec<String> {
        self.fingerprints.changed_since(&old.fingerprints)
    }

    /// Takes the counts so far, leaving zeros: `[(flag, variant, count)]`, counts above 0 only.
    fn drain_counts(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (position, flag) in self.env.flags().enumerate() {
            let first = self.first_counter[position];
            for (i, (variant, _)) in flag.variations().enumerate() {
                let n = self.counters[first + i].swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((flag.key().to_owned(), variant.to_owned(), n));
                }
            }
        }
        out
    }
}

impl Engine {
    /// Evaluates `key`; the served value when `accept` takes it (and then counts it).
    #[inline]
    fn typed<'a>(
        &'a self,
        key: &'a str,
        context: &Bound<'_, PyAny>,
        accept: fn(&Value) -> bool,
    ) -> Option<&'a Value> {
        let evaluation = self.env.evaluate(key, &to_context(context));
        let value = evaluation.value.filter(|v| accept(v))?;
        self.count(key, &evaluation);
        Some(value)
    }
}

/// A flag key given from Python; `None` when it is not a string.
#[inline]
fn flag_key<'a>(key: &'a Bound<'_, PyAny>) -> Option<std::borrow::Cow<'a, str>> {
    key.cast::<PyString>().ok()?.to_cow().ok()
}

/// The interpreter token of a bound object.
#[inline]
fn key_py<'py>(any: &Bound<'py, PyAny>) -> Python<'py> {
    any.py()
}

fn evaluation_tuple<'py>(
    py: Python<'py>,
    e: &Evaluation<'_>,
    with_key: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let none = || py.None().into_bound(py);
    let text = |s: Option<&str>| s.map_or_else(none, |s| PyString::new(py, s).into_any());
    let mut items = Vec::with_capacity(8);
    if with_key {
        items.push(PyString::new(py, e.key).into_any());
    }
    items.push(e.value.map_or_else(none, |v| to_python(py, v)));
    items.push(text(e.variant));
    items.push(PyString::new(py, e.reason.as_str()).into_any());
    items.push(text(e.error.map(|e| e.code())));
    items.push(text(e.rule_id));
    items.push(text(e.prerequisite));
    items.push(e.version.into_pyobject(py)?.into_any());
    PyTuple::new(py, items)
}

/// A Python context as an engine context: a `dict` (or another mapping) with string keys;
/// anything else is empty.
fn to_context(context: &Bound<'_, PyAny>) -> Context {
    let mut out = Context::new();
    let mut add = |name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>| {
        if let (Ok(name), Some(value)) = (name.cast::<PyString>(), to_json(value, 1))
            && let Ok(name) = name.to_cow()
        {
            out.insert(name.into_owned(), value);
        }
    };
    if let Ok(dict) = context.cast::<PyDict>() {
        for (name, value) in dict.iter() {
            add(&name, &value);
        }
    } else if let Ok(mapping) = context.cast::<PyMapping>()
        && let Ok(items) = mapping.items()
    {
        for item in items.iter() {
            if let Ok((name, value)) = item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>() {
                add(&name, &value);
            }
        }
    }
    out
}

/// A Python value as JSON: `None`, `bool`, `int`, `float`, `str`, lists, tuples and dicts with
/// string keys. Other objects (and NaN or infinite floats) have no JSON form and are left out.
fn to_json(value: &Bound<'_, PyAny>, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    if let Ok(s) = value.cast::<PyString>() {
        return s.to_cow().ok().map(|s| Value::String(s.into_owned()));
    }
    if value.is_none() {
        return Some(Value::Null);
    }
    // `bool` is a subclass of `int`: look at it first.
    if let Ok(b) = value.cast::<PyBool>() {
        return Some(Value::Bool(b.is_true()));
    }
    if let Ok(i) = value.cast::<PyInt>() {
        if let Ok(i) = i.extract::<i64>() {
            return Some(Value::from(i));
        }
        if let Ok(u) = i.extract::<u64>() {
            return Some(Value::from(u));
        }
        return i
            .extract::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number);
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value()).map(Value::Number);
    }
    if let Ok(list) = value.cast::<PyList>() {
        return Some(Value::Array(
            list.iter().filter_map(|v| to_json(&v, depth + 1)).collect(),
        ));
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return Some(Value::Array(
            tuple.iter().filter_map(|v| to_json(&v, depth + 1)).collect(),
        ));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in dict.iter() {
            if let (Ok(k), Some(v)) = (k.cast::<PyString>(), to_json(&v, depth + 1))
                && let Ok(k) = k.to_cow()
            {
                map.insert(k.into_owned(), v);
            }
        }
        return Some(Value::Object(map));
    }
    None
}

/// A JSON value as a new Python object.
fn to_python<'py>(py: Python<'py>, value: &Value) -> Bound<'py, PyAny> {
    match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)
                    .map_or_else(|_| py.None().into_bound(py), Bound::into_any)
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)
                    .map_or_else(|_| py.None().into_bound(py), Bound::into_any)
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                // Appending to a fresh list cannot fail.
                let _ = list.append(to_python(py, item));
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                let _ = dict.set_item(k, to_python(py, v));
            }
            dict.into_any()
        }
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
