//! Fields written as a name or as a one-entry table (`"all"`, `{ cycle = 3 }`; `"every"`,
//! `{ every = 2 }`): the TOML form of `model.share` and `model.recompute`, read with errors that
//! name the field and what it takes.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserializer, Serializer};

/// One value's written form.
pub(crate) enum Form<'a> {
    /// A bare name.
    Name(&'a str),
    /// A table with one integer entry.
    Entry(&'a str, usize),
}

/// Writes `form`.
pub(crate) fn serialize<S: Serializer>(s: S, form: Form) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match form {
        Form::Name(name) => s.serialize_str(name),
        Form::Entry(key, k) => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(key, &k)?;
            map.end()
        }
    }
}

/// Reads a value of `field` through `read`, which gives `None` for a form it does not take;
/// `expected` lists the forms for the error.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, T>(
    d: D,
    field: &'static str,
    expected: &'static str,
    read: impl Fn(Form) -> Option<T>,
) -> Result<T, D::Error> {
    struct V<F> {
        field: &'static str,
        expected: &'static str,
        read: F,
    }
    impl<'de, T, F: Fn(Form) -> Option<T>> Visitor<'de> for V<F> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expected)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.read)(Form::Name(v)).ok_or_else(|| {
                E::custom(format!(
                    "{} = \"{v}\": expected {}",
                    self.field, self.expected
                ))
            })
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let bad = || {
                <A::Error as de::Error>::custom(format!(
                    "{}: expected {}",
                    self.field, self.expected
                ))
            };
            let (key, k): (String, usize) = map.next_entry()?.ok_or_else(bad)?;
            if map.next_key::<String>()?.is_some() {
                return Err(bad());
            }
            (self.read)(Form::Entry(&key, k)).ok_or_else(bad)
        }
    }
    d.deserialize_any(V {
        field,
        expected,
        read,
    })
}
