//! Conversions between wire messages and `huitong-core` domain types.
//!
//! Wire enums arrive as raw integers; an unknown or unspecified value is refused here, so the
//! domain never sees one.

use huitong_core::{
    DeptId, Error, FieldName, FieldSpec, FieldType, ResourceId, ResourceName, ResourceSpec,
    ResourceSpecParts, Sensitivity, SharingClass,
};

use crate::v1;

fn bad(resource: &str, problem: String) -> Error {
    Error::InvalidResource {
        resource: resource.to_owned(),
        problem,
    }
}

impl From<FieldType> for v1::FieldType {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::String => v1::FieldType::String,
            FieldType::Int => v1::FieldType::Int,
            FieldType::Double => v1::FieldType::Double,
            FieldType::Bool => v1::FieldType::Bool,
            FieldType::Bytes => v1::FieldType::Bytes,
            FieldType::Date => v1::FieldType::Date,
            FieldType::Timestamp => v1::FieldType::Timestamp,
        }
    }
}

impl From<Sensitivity> for v1::Sensitivity {
    fn from(s: Sensitivity) -> Self {
        match s {
            Sensitivity::Public => v1::Sensitivity::Public,
            Sensitivity::Internal => v1::Sensitivity::Internal,
            Sensitivity::Personal => v1::Sensitivity::Personal,
            Sensitivity::Sensitive => v1::Sensitivity::Sensitive,
        }
    }
}

impl From<SharingClass> for v1::SharingClass {
    fn from(s: SharingClass) -> Self {
        match s {
            SharingClass::Open => v1::SharingClass::Open,
            SharingClass::Conditional => v1::SharingClass::Conditional,
            SharingClass::NotShared => v1::SharingClass::NotShared,
        }
    }
}

fn field_type(raw: i32) -> Option<FieldType> {
    Some(match v1::FieldType::try_from(raw).ok()? {
        v1::FieldType::Unspecified => return None,
        v1::FieldType::String => FieldType::String,
        v1::FieldType::Int => FieldType::Int,
        v1::FieldType::Double => FieldType::Double,
        v1::FieldType::Bool => FieldType::Bool,
        v1::FieldType::Bytes => FieldType::Bytes,
        v1::FieldType::Date => FieldType::Date,
        v1::FieldType::Timestamp => FieldType::Timestamp,
    })
}

fn sensitivity(raw: i32) -> Option<Sensitivity> {
    Some(match v1::Sensitivity::try_from(raw).ok()? {
        v1::Sensitivity::Unspecified => return None,
        v1::Sensitivity::Public => Sensitivity::Public,
        v1::Sensitivity::Internal => Sensitivity::Internal,
        v1::Sensitivity::Personal => Sensitivity::Personal,
        v1::Sensitivity::Sensitive => Sensitivity::Sensitive,
    })
}

fn sharing_class(raw: i32) -> Option<SharingClass> {
    Some(match v1::SharingClass::try_from(raw).ok()? {
        v1::SharingClass::Unspecified => return None,
        v1::SharingClass::Open => SharingClass::Open,
        v1::SharingClass::Conditional => SharingClass::Conditional,
        v1::SharingClass::NotShared => SharingClass::NotShared,
    })
}

/// Reads a provider's description of one of its resources.
pub fn resource_spec(
    provider: &DeptId,
    d: &v1::ResourceDescription,
) -> Result<ResourceSpec, Error> {
    let name = ResourceName::new(&d.name)?;
    let id = ResourceId::new(provider.clone(), name);
    let rid = id.to_string();
    let mut fields = Vec::with_capacity(d.fields.len());
    for f in &d.fields {
        let name = FieldName::new(&f.name)?;
        let ty = field_type(f.r#type)
            .ok_or_else(|| bad(&rid, format!("field {name} has no valid type")))?;
        let sensitivity = sensitivity(f.sensitivity)
            .ok_or_else(|| bad(&rid, format!("field {name} has no valid sensitivity")))?;
        fields.push(FieldSpec {
            name,
            ty,
            sensitivity,
            description: f.description.clone(),
        });
    }
    let key_fields = d
        .key_fields
        .iter()
        .map(|k| FieldName::new(k))
        .collect::<Result<Vec<_>, _>>()?;
    let sharing_class = sharing_class(d.sharing_class)
        .ok_or_else(|| bad(&rid, "it has no valid sharing class".into()))?;
    ResourceSpec::new(ResourceSpecParts {
        id,
        title: d.title.clone(),
        description: d.description.clone(),
        fields,
        key_fields,
        sharing_class,
        legal_basis: d.legal_basis.clone(),
        update_cycle: d.update_cycle.clone(),
        max_cache_age_seconds: d.max_cache_age_seconds,
    })
}

/// The wire description of a resource.
pub fn resource_description(s: &ResourceSpec) -> v1::ResourceDescription {
    v1::ResourceDescription {
        name: s.id().name().to_string(),
        title: s.title.clone(),
        description: s.description.clone(),
        fields: s
            .fields()
            .iter()
            .map(|f| v1::FieldSpec {
                name: f.name.to_string(),
                r#type: v1::FieldType::from(f.ty) as i32,
                sensitivity: v1::Sensitivity::from(f.sensitivity) as i32,
                description: f.description.clone(),
            })
            .collect(),
        key_fields: s.key_fields().iter().map(|k| k.to_string()).collect(),
        sharing_class: v1::SharingClass::from(s.sharing_class) as i32,
        legal_basis: s.legal_basis.clone(),
        update_cycle: s.update_cycle.clone(),
        max_cache_age_seconds: s.max_cache_age_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip() {
        let dept = DeptId::new("market-regulation").unwrap();
        let d = v1::ResourceDescription {
            name: "business-licences".into(),
            title: "Business licences".into(),
            fields: vec![v1::FieldSpec {
                name: "credit_code".into(),
                r#type: v1::FieldType::String as i32,
                sensitivity: v1::Sensitivity::Public as i32,
                description: String::new(),
            }],
            key_fields: vec!["credit_code".into()],
            sharing_class: v1::SharingClass::Open as i32,
            max_cache_age_seconds: 300,
            ..Default::default()
        };
        let spec = resource_spec(&dept, &d).unwrap();
        assert_eq!(spec.id().to_string(), "market-regulation/business-licences");
        assert_eq!(resource_description(&spec), d);
    }

    #[test]
    fn unspecified_enums_are_refused() {
        let dept = DeptId::new("a").unwrap();
        let d = v1::ResourceDescription {
            name: "r".into(),
            fields: vec![v1::FieldSpec {
                name: "k".into(),
                r#type: 0,
                sensitivity: 1,
                description: String::new(),
            }],
            key_fields: vec!["k".into()],
            sharing_class: 1,
            ..Default::default()
        };
        let e = resource_spec(&dept, &d).unwrap_err().to_string();
        assert!(e.contains("no valid type"), "{e}");
    }
}
