//! Configuration items and products.

use super::payload;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use serde::Serialize;

use super::{
    CiStatus, CustomField, CustomFieldInput, Iso8601Date, Iso8601Timestamp, PageInfo,
    ProductCategoryRuleSet, ValuesFilter, connection, custom_fields, filter_matches, opt_str,
    paginate, shared,
};
use crate::state::Record;

/// View of the configuration items query.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(rename_items = "snake_case")]
#[allow(missing_docs)]
pub enum ConfigurationItemView {
    All,
    Archive,
    CurrentAccount,
    SpareCis,
    SupportedByMyTeams,
    Trash,
}

/// A configuration item.
pub struct ConfigurationItem(pub(crate) Record);

impl From<Record> for ConfigurationItem {
    fn from(r: Record) -> Self {
        ConfigurationItem(r)
    }
}

#[Object]
impl ConfigurationItem {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Label.
    async fn label(&self) -> Option<String> {
        self.0.str("label")
    }
    /// Source.
    async fn source(&self) -> Option<String> {
        self.0.str("source")
    }
    /// Id in the source.
    #[graphql(name = "sourceID")]
    async fn source_id(&self) -> Option<String> {
        self.0.str("sourceID")
    }
    /// System id.
    #[graphql(name = "systemID")]
    async fn system_id(&self) -> Option<String> {
        self.0.str("systemID")
    }
    /// Serial number.
    async fn serial_nr(&self) -> Option<String> {
        self.0.str("serialNr")
    }
    /// Remarks.
    async fn remarks(&self) -> Option<String> {
        self.0.str("remarks")
    }
    /// Status.
    async fn status(&self) -> Option<CiStatus> {
        self.0.get("status")
    }
    /// Rule set (from the product category).
    async fn rule_set(&self) -> Option<ProductCategoryRuleSet> {
        self.0.get("ruleSet")
    }
    /// Alternate names.
    async fn alternate_names(&self) -> Vec<String> {
        self.0.strings("alternateNames")
    }
    /// Custom field values.
    async fn custom_fields(&self) -> Vec<CustomField> {
        custom_fields(&self.0)
    }
    /// End of support date.
    async fn end_of_support_date(&self) -> Option<Iso8601Date> {
        self.0.str("endOfSupportDate").map(Iso8601Date)
    }
    /// Last seen timestamp.
    async fn last_seen_at(&self) -> Option<Iso8601Timestamp> {
        self.0.str("lastSeenAt").map(Iso8601Timestamp)
    }
    /// The product.
    async fn product(&self, ctx: &Context<'_>) -> Result<Option<Product>> {
        let Some(pid) = self.0.str("productId") else {
            return Ok(None);
        };
        let state = shared(ctx)?.lock();
        Ok(state
            .find("Product", &self.0.account, &pid)
            .cloned()
            .map(Product))
    }
}

connection!(
    ConfigurationItemConnection,
    ConfigurationItem,
    "A page of configuration items."
);

/// Filter of `configurationItems`.
#[derive(InputObject, Clone, Debug)]
pub struct ConfigurationItemFilter {
    /// Name.
    pub name: Option<ValuesFilter>,
    /// Label.
    pub label: Option<ValuesFilter>,
    /// Source.
    pub source: Option<ValuesFilter>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    pub source_id: Option<ValuesFilter>,
    /// System id.
    #[graphql(name = "systemID")]
    pub system_id: Option<ValuesFilter>,
    /// Serial number.
    pub serial_nr: Option<ValuesFilter>,
    /// Status.
    pub status: Option<ValuesFilter>,
    /// Rule set.
    pub rule_set: Option<ValuesFilter>,
    /// Product.
    pub product: Option<ValuesFilter>,
}

impl ConfigurationItemFilter {
    /// The snapshot types filter values loosely (`FilterValue`); 4me still refuses a status or
    /// rule set that is not one of its enum values, and so does the sandbox.
    pub(crate) fn check_enum_values(&self) -> async_graphql::Result<()> {
        fn check<T: serde::de::DeserializeOwned>(
            filter: &Option<ValuesFilter>,
            attribute: &str,
            type_name: &str,
        ) -> async_graphql::Result<()> {
            let values = filter
                .iter()
                .flat_map(|f| f.values.iter().flatten().flatten());
            for value in values {
                if serde_json::from_value::<T>(serde_json::Value::String(value.0.clone())).is_err()
                {
                    return Err(async_graphql::Error::new(format!(
                        "Argument 'filter' on Field 'configurationItems': '{}' is not a valid {type_name} for {attribute}",
                        value.0
                    )));
                }
            }
            Ok(())
        }
        check::<CiStatus>(&self.status, "status", "CiStatus")?;
        check::<ProductCategoryRuleSet>(&self.rule_set, "ruleSet", "ProductCategoryRuleSet")
    }

    pub(crate) fn matches(&self, r: &Record) -> bool {
        opt_str(&self.name, r, "name")
            && opt_str(&self.label, r, "label")
            && opt_str(&self.source, r, "source")
            && opt_str(&self.source_id, r, "sourceID")
            && opt_str(&self.system_id, r, "systemID")
            && opt_str(&self.serial_nr, r, "serialNr")
            && self
                .status
                .as_ref()
                .is_none_or(|f| filter_matches(&f.values, f.negate, r.str("status").as_deref()))
            && self
                .rule_set
                .as_ref()
                .is_none_or(|f| filter_matches(&f.values, f.negate, r.str("ruleSet").as_deref()))
            && self
                .product
                .as_ref()
                .is_none_or(|f| f.matches(r.str("productId").as_deref()))
    }
}

macro_rules! ci_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Name.
            pub name: Option<String>,
            /// Label.
            pub label: Option<String>,
            /// Source.
            pub source: Option<String>,
            /// Id in the source.
            #[graphql(name = "sourceID")]
            #[serde(rename = "sourceID")]
            pub source_id: Option<String>,
            /// System id.
            #[graphql(name = "systemID")]
            #[serde(rename = "systemID")]
            pub system_id: Option<String>,
            /// Service.
            pub service_id: Option<String>,
            /// Support team.
            pub support_team_id: Option<String>,
            /// Service instances.
            pub service_instance_ids: Option<Vec<String>>,
            /// Custom fields.
            pub custom_fields: Option<Vec<CustomFieldInput>>,
            /// Alternate names.
            pub alternate_names: Option<Vec<String>>,
            /// Serial number.
            pub serial_nr: Option<String>,
            /// Remarks.
            pub remarks: Option<String>,
            /// Location.
            pub location: Option<String>,
            /// Site.
            pub site_id: Option<String>,
            /// Users.
            pub user_ids: Option<Vec<String>>,
            /// End of support date.
            pub end_of_support_date: Option<Iso8601Date>,
            /// In use since.
            pub in_use_since: Option<Iso8601Date>,
            /// Warranty expiry date.
            pub warranty_expiry_date: Option<Iso8601Date>,
            /// Last seen.
            pub last_seen_at: Option<Iso8601Timestamp>,
            /// Operating system CI.
            pub operating_system_id: Option<String>,
            /// RAM in GB.
            pub ram_amount: Option<super::Decimal>,
            /// Number of processors.
            pub nr_of_processors: Option<i32>,
            /// Number of cores.
            pub nr_of_cores: Option<i32>,
        }
    };
}

ci_input!(
    ConfigurationItemCreateInput,
    "Input of `configurationItemCreate`.",
    {
    /// Product.
    pub product_id: String,
    /// Status.
    pub status: CiStatus,}
);
ci_input!(ConfigurationItemUpdateInput, "Input of `configurationItemUpdate`.", {
    /// Product.
    pub product_id: Option<String>,
    /// Status.
    pub status: Option<CiStatus>,
    /// Node id of the configuration item.
    pub id: String,
});

payload!(ConfigurationItemCreatePayload, configuration_item: ConfigurationItem, "Payload of `configurationItemCreate`.");
payload!(ConfigurationItemUpdatePayload, configuration_item: ConfigurationItem, "Payload of `configurationItemUpdate`.");

// ---------------------------------------------------------------------------------------------
// Products

/// A product.
pub struct Product(pub(crate) Record);

impl From<Record> for Product {
    fn from(r: Record) -> Self {
        Product(r)
    }
}

#[Object]
impl Product {
    /// Node id.
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// Name.
    async fn name(&self) -> Option<String> {
        self.0.str("name")
    }
    /// Brand.
    async fn brand(&self) -> Option<String> {
        self.0.str("brand")
    }
    /// Model.
    async fn model(&self) -> Option<String> {
        self.0.str("model")
    }
    /// Source.
    async fn source(&self) -> Option<String> {
        self.0.str("source")
    }
    /// Id in the source.
    #[graphql(name = "sourceID")]
    async fn source_id(&self) -> Option<String> {
        self.0.str("sourceID")
    }
    /// Product id (SKU).
    #[graphql(name = "productID")]
    async fn product_id(&self) -> Option<String> {
        self.0.str("productID")
    }
    /// Rule set.
    async fn rule_set(&self) -> Option<ProductCategoryRuleSet> {
        self.0.get("ruleSet")
    }
}

connection!(ProductConnection, Product, "A page of products.");

/// Filter of `products`.
#[derive(InputObject, Clone, Debug)]
pub struct ProductFilter {
    /// Name.
    pub name: Option<ValuesFilter>,
    /// Source.
    pub source: Option<ValuesFilter>,
    /// Id in the source.
    #[graphql(name = "sourceID")]
    pub source_id: Option<ValuesFilter>,
}

impl ProductFilter {
    pub(crate) fn matches(&self, r: &Record) -> bool {
        opt_str(&self.name, r, "name")
            && opt_str(&self.source, r, "source")
            && opt_str(&self.source_id, r, "sourceID")
    }
}

macro_rules! product_input {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(InputObject, Clone, Debug, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($extra)*
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Model.
            pub model: Option<String>,
            /// Remarks.
            pub remarks: Option<String>,
            /// Support team.
            pub support_team_id: Option<String>,
            /// UI extension.
            pub ui_extension_id: Option<String>,
            /// Custom fields.
            pub custom_fields: Option<Vec<CustomFieldInput>>,
            /// Source.
            pub source: Option<String>,
            /// Id in the source.
            #[graphql(name = "sourceID")]
            #[serde(rename = "sourceID")]
            pub source_id: Option<String>,
            /// Product id (SKU).
            #[graphql(name = "productID")]
            #[serde(rename = "productID")]
            pub product_id: Option<String>,
            /// Disabled.
            pub disabled: Option<bool>,
        }
    };
}

product_input!(ProductCreateInput, "Input of `productCreate`.", {
    /// Category reference (e.g. `other_type_of_hardware`).
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Name.
    pub name: String,});
product_input!(ProductUpdateInput, "Input of `productUpdate`.", {
    /// Category reference (e.g. `other_type_of_hardware`).
    pub category: Option<String>,
    /// Brand.
    pub brand: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Node id of the product.
    pub id: String,
});

payload!(ProductCreatePayload, product: Product, "Payload of `productCreate`.");
payload!(ProductUpdatePayload, product: Product, "Payload of `productUpdate`.");
