//! The catalogue (信息资源目录): what each department offers, field by field, and the checks a
//! query must pass against it before it is routed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Error;
use crate::ids::{DeptId, FieldName, ResourceId};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every variant, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in config files, JSON and messages.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the name used in config files.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted names, for error messages.
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// The type of a field's values.
    FieldType {
        String = "string",
        Int = "int",
        Double = "double",
        Bool = "bool",
        Bytes = "bytes",
        Date = "date",
        Timestamp = "timestamp",
    }
);

named_enum!(
    /// How much harm release of a field can do.
    Sensitivity {
        Public = "public",
        Internal = "internal",
        /// Identifies or describes a person.
        Personal = "personal",
        /// Special categories: health, criminal record, religion.
        Sensitive = "sensitive",
    }
);

named_enum!(
    /// Sharing class (GB/T 21063): who may be served at all.
    SharingClass {
        /// 无条件共享: any authenticated department.
        Open = "open",
        /// 有条件共享: only with an approved grant.
        Conditional = "conditional",
        /// 不予共享: catalogued, never served.
        NotShared = "not-shared",
    }
);

/// The kind of a value, as far as type checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Null,
    String,
    Int,
    Double,
    Bool,
    Bytes,
    Date,
    Timestamp,
}

impl ValueKind {
    fn describe(self) -> &'static str {
        match self {
            ValueKind::Null => "null",
            ValueKind::String => "a string",
            ValueKind::Int => "an int",
            ValueKind::Double => "a double",
            ValueKind::Bool => "a bool",
            ValueKind::Bytes => "bytes",
            ValueKind::Date => "a date",
            ValueKind::Timestamp => "a timestamp",
        }
    }
}

impl FieldType {
    /// The kind of the values this type holds.
    pub fn kind(self) -> ValueKind {
        match self {
            FieldType::String => ValueKind::String,
            FieldType::Int => ValueKind::Int,
            FieldType::Double => ValueKind::Double,
            FieldType::Bool => ValueKind::Bool,
            FieldType::Bytes => ValueKind::Bytes,
            FieldType::Date => ValueKind::Date,
            FieldType::Timestamp => ValueKind::Timestamp,
        }
    }

    /// Whether a non-null value of `kind` may stand in a field of this type.
    pub fn accepts(self, kind: ValueKind) -> bool {
        matches!(
            (self, kind),
            (FieldType::String, ValueKind::String)
                | (FieldType::Int, ValueKind::Int)
                | (FieldType::Double, ValueKind::Double | ValueKind::Int)
                | (FieldType::Bool, ValueKind::Bool)
                | (FieldType::Bytes, ValueKind::Bytes)
                | (FieldType::Date, ValueKind::Date)
                | (FieldType::Timestamp, ValueKind::Timestamp)
        )
    }
}

/// One field of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: FieldName,
    pub ty: FieldType,
    pub sensitivity: Sensitivity,
    pub description: String,
}

/// A catalogued resource, checked for consistency when built.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSpec {
    id: ResourceId,
    pub title: String,
    pub description: String,
    fields: Vec<FieldSpec>,
    key_fields: Vec<FieldName>,
    pub sharing_class: SharingClass,
    pub legal_basis: String,
    pub update_cycle: String,
    /// Longest time a cached copy may be served, in seconds; 0 means never cache.
    pub max_cache_age_seconds: u32,
    /// How long past `max_cache_age_seconds` a cached copy may still be served, flagged stale,
    /// when the provider cannot answer; 0 means never.
    pub stale_if_error_seconds: u32,
}

/// The parts of a [`ResourceSpec`] before its consistency checks.
#[derive(Debug, Clone)]
pub struct ResourceSpecParts {
    pub id: ResourceId,
    pub title: String,
    pub description: String,
    pub fields: Vec<FieldSpec>,
    pub key_fields: Vec<FieldName>,
    pub sharing_class: SharingClass,
    pub legal_basis: String,
    pub update_cycle: String,
    pub max_cache_age_seconds: u32,
    pub stale_if_error_seconds: u32,
}

impl ResourceSpec {
    /// Checks that the fields are unique, that there is a key and that every key field is a field.
    pub fn new(p: ResourceSpecParts) -> Result<Self, Error> {
        let bad = |problem: String| Error::InvalidResource {
            resource: p.id.to_string(),
            problem,
        };
        if p.fields.is_empty() {
            return Err(bad("it declares no fields".into()));
        }
        for (i, f) in p.fields.iter().enumerate() {
            if p.fields[..i].iter().any(|g| g.name == f.name) {
                return Err(bad(format!("field {} is declared twice", f.name)));
            }
        }
        if p.key_fields.is_empty() {
            return Err(bad("it declares no key fields".into()));
        }
        for (i, k) in p.key_fields.iter().enumerate() {
            if !p.fields.iter().any(|f| &f.name == k) {
                return Err(bad(format!("key field {k} is not one of its fields")));
            }
            if p.key_fields[..i].contains(k) {
                return Err(bad(format!("key field {k} is named twice")));
            }
        }
        Ok(Self {
            id: p.id,
            title: p.title,
            description: p.description,
            fields: p.fields,
            key_fields: p.key_fields,
            sharing_class: p.sharing_class,
            legal_basis: p.legal_basis,
            update_cycle: p.update_cycle,
            max_cache_age_seconds: p.max_cache_age_seconds,
            stale_if_error_seconds: p.stale_if_error_seconds,
        })
    }

    pub fn id(&self) -> &ResourceId {
        &self.id
    }

    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    pub fn key_fields(&self) -> &[FieldName] {
        &self.key_fields
    }

    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    fn field_names(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        names.join(", ")
    }

    fn known_field(&self, name: &str) -> Result<&FieldSpec, Error> {
        self.field(name).ok_or_else(|| Error::UnknownField {
            resource: self.id.clone(),
            field: name.chars().take(80).collect(),
            known: self.field_names(),
        })
    }

    /// Refuses a resource that must never be served.
    pub fn check_shared(&self) -> Result<(), Error> {
        if self.sharing_class == SharingClass::NotShared {
            let basis = if self.legal_basis.is_empty() {
                String::new()
            } else {
                format!(" under {}", self.legal_basis)
            };
            return Err(Error::NotShared {
                resource: self.id.clone(),
                basis,
            });
        }
        Ok(())
    }

    /// Checks the requested fields: at least one, each declared, none twice.
    pub fn check_requested_fields<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<FieldName>, Error> {
        let mut out: Vec<FieldName> = Vec::new();
        for name in names {
            let spec = self.known_field(name)?;
            if out.contains(&spec.name) {
                return Err(Error::DuplicateField(name.to_owned()));
            }
            out.push(spec.name.clone());
        }
        if out.is_empty() {
            return Err(Error::NoFieldsRequested);
        }
        Ok(out)
    }

    /// Checks a key: exactly the key fields, each with a non-empty value of the right type.
    /// `value_is_empty` marks an empty string or empty bytes.
    pub fn check_key<'a>(
        &self,
        key: impl IntoIterator<Item = (&'a str, ValueKind, bool)>,
    ) -> Result<(), Error> {
        let expected = || {
            let names: Vec<&str> = self.key_fields.iter().map(|k| k.as_str()).collect();
            names.join(", ")
        };
        let bad = |problem: String| Error::BadKey {
            resource: self.id.clone(),
            expected: expected(),
            problem,
        };
        let mut seen = 0usize;
        for (name, kind, value_is_empty) in key {
            if !self.key_fields.iter().any(|k| k.as_str() == name) {
                return Err(bad(format!(
                    "{:?} is not a key field",
                    name.chars().take(80).collect::<String>()
                )));
            }
            if kind == ValueKind::Null || value_is_empty {
                return Err(bad(format!("the value for {name} is empty")));
            }
            self.check_type(name, kind)?;
            seen += 1;
        }
        if seen != self.key_fields.len() {
            return Err(bad(format!(
                "{seen} of {} key fields were given",
                self.key_fields.len()
            )));
        }
        Ok(())
    }

    /// Checks a key given as text, as a subject report gives it: exactly the key fields (names
    /// are case-sensitive, as in a query), each with a value that shows something. Value types
    /// are not checked: the text is what is normalised and HMACed.
    pub fn check_key_text<'a>(
        &self,
        key: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), Error> {
        self.check_key(key.into_iter().map(|(name, value)| {
            let kind = self.field(name).map_or(ValueKind::String, |f| f.ty.kind());
            (name, kind, crate::ids::trim_text(value).is_empty())
        }))
    }

    /// Checks an equality filter's field and value type.
    pub fn check_filter(&self, field: &str, kind: ValueKind) -> Result<FieldName, Error> {
        let spec = self.known_field(field)?;
        self.check_type(field, kind)?;
        Ok(spec.name.clone())
    }

    fn check_type(&self, field: &str, kind: ValueKind) -> Result<(), Error> {
        let spec = self.known_field(field)?;
        if kind == ValueKind::Null || spec.ty.accepts(kind) {
            return Ok(());
        }
        Err(Error::WrongValueType {
            resource: self.id.clone(),
            field: field.to_owned(),
            expected: spec.ty.as_str(),
            got: kind.describe(),
        })
    }
}

/// Every catalogued resource, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    resources: BTreeMap<ResourceId, Arc<ResourceSpec>>,
}

impl Catalogue {
    pub fn get(&self, id: &ResourceId) -> Result<&Arc<ResourceSpec>, Error> {
        self.resources
            .get(id)
            .ok_or_else(|| Error::UnknownResource(id.clone()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceSpec>> {
        self.resources.values()
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// A copy in which `provider`'s resources are exactly `specs`. Specs of other providers are
    /// refused, so that one department cannot describe another's resources.
    pub fn with_provider(
        &self,
        provider: &DeptId,
        specs: Vec<ResourceSpec>,
    ) -> Result<Catalogue, Error> {
        if let Some(s) = specs.iter().find(|s| s.id.provider() != provider) {
            return Err(Error::InvalidResource {
                resource: s.id.to_string(),
                problem: format!(
                    "department {provider} cannot describe another department's resource"
                ),
            });
        }
        let mut resources = self.resources.clone();
        resources.retain(|id, _| id.provider() != provider);
        for s in specs {
            resources.insert(s.id.clone(), Arc::new(s));
        }
        Ok(Catalogue { resources })
    }
}

#[cfg(test)]
mod tests;
