//! The asset items requested from `assetResources` (only the fields the integration uses).

use serde::{Deserialize, Deserializer};

/// Accepts `null` (or absence) for a list.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Element paths requested for every asset (original field list, in order).
pub const ASSET_FIELDS: &[&str] = &[
    "_id",
    "key",
    "url",
    "assetBasicInfo.name",
    "assetBasicInfo.type",
    "assetBasicInfo.description",
    "assetBasicInfo.ipAddress",
    "assetBasicInfo.firstSeen",
    "assetBasicInfo.lastSeen",
    "assetBasicInfo.lastChanged",
    "assetBasicInfo.userName",
    "assetBasicInfo.userDomain",
    "assetCustom.model",
    "assetCustom.manufacturer",
    "assetCustom.stateName",
    "assetCustom.purchaseDate",
    "assetCustom.warrantyDate",
    "assetCustom.serialNumber",
    "assetCustom.sku",
    "operatingSystem.name",
    "recognitionInfo.osMetadata.name",
    "recognitionInfo.osMetadata.endOfSupportDate",
    "users.name",
    "users.email",
    "users.fullName",
    "softwares.name",
    "memoryModules.size",
    "processors.numberOfCores",
];

/// One Lansweeper asset.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    /// Lansweeper's internal id.
    #[serde(rename = "_id")]
    pub id: Option<String>,
    /// The asset key (the CI `sourceID`).
    pub key: Option<String>,
    /// The asset page URL (the CI `systemID`).
    pub url: Option<String>,
    /// Basic information.
    pub asset_basic_info: Option<BasicInfo>,
    /// Custom (inventory) information.
    pub asset_custom: Option<Custom>,
    /// The operating system.
    pub operating_system: Option<Named>,
    /// Recognition information (OS metadata).
    pub recognition_info: Option<RecognitionInfo>,
    /// Users of the asset.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub users: Vec<User>,
    /// Installed software.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub softwares: Vec<Option<Named>>,
    /// Memory modules.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub memory_modules: Vec<MemoryModule>,
    /// Processors.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub processors: Vec<Processor>,
}

/// `assetBasicInfo`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicInfo {
    /// Asset name.
    pub name: Option<String>,
    /// Asset type (the product category).
    #[serde(rename = "type")]
    pub asset_type: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// IP address.
    pub ip_address: Option<String>,
    /// First seen (ISO 8601).
    pub first_seen: Option<String>,
    /// Last seen (ISO 8601).
    pub last_seen: Option<String>,
    /// Last changed (ISO 8601).
    pub last_changed: Option<String>,
    /// Last logged-on user.
    pub user_name: Option<String>,
    /// Domain of that user.
    pub user_domain: Option<String>,
}

/// `assetCustom`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Custom {
    /// Model.
    pub model: Option<String>,
    /// Manufacturer (brand).
    pub manufacturer: Option<String>,
    /// State name (`Active`, `Broken`, ...).
    pub state_name: Option<String>,
    /// Purchase date.
    pub purchase_date: Option<String>,
    /// Warranty end date.
    pub warranty_date: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// SKU (product id).
    pub sku: Option<String>,
}

/// An object with a name (`operatingSystem`, `softwares[]`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Named {
    /// The name.
    pub name: Option<String>,
}

/// `recognitionInfo`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecognitionInfo {
    /// OS metadata.
    pub os_metadata: Option<OsMetadata>,
}

/// `recognitionInfo.osMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsMetadata {
    /// Recognized OS name.
    pub name: Option<String>,
    /// End-of-support date (ISO 8601).
    pub end_of_support_date: Option<String>,
}

/// `users[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Account name.
    pub name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Full name.
    pub full_name: Option<String>,
}

/// `memoryModules[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct MemoryModule {
    /// Size in bytes.
    pub size: Option<f64>,
}

/// `processors[]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Processor {
    /// Number of cores.
    pub number_of_cores: Option<f64>,
}
