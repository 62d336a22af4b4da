//! Deterministic, lazily generated Lansweeper assets and the filter/paging logic over them.
//!
//! An asset is a pure function of (site, index): nothing is stored, so a site can hold 100,000
//! assets at no memory cost. Filters are evaluated on a cheap [`Core`] of each asset (type, IP,
//! last-seen, installation); the full JSON item is only built for the assets of a page.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// A site of the fake (immutable once added).
#[derive(Clone, Debug)]
pub(crate) struct SiteData {
    pub id: String,
    pub name: String,
    pub asset_count: u64,
    pub installations: Vec<String>,
    pub seed: u64,
    /// Reference time for `lastSeen` and other dates.
    pub now: DateTime<Utc>,
}

impl SiteData {
    /// Id of installation `k` of this site.
    pub fn installation_id(&self, k: usize) -> String {
        format!("{}-inst-{k}", self.id)
    }

    /// Index of the installation with `id`, if any.
    fn installation_index(&self, id: &str) -> Option<usize> {
        (0..self.installations.len()).find(|k| self.installation_id(*k) == id)
    }
}

/// Asset types with their share (out of 100) of a generated site.
pub(crate) const ASSET_TYPES: &[(&str, u64)] = &[
    ("Windows", 30),
    ("Linux", 15),
    ("Monitor", 10),
    ("Printer", 8),
    ("Switch", 7),
    ("iPad", 5),
    ("VMware Guest", 5),
    ("Virtual Machine", 5),
    ("NAS", 4),
    ("Webserver", 4),
    ("Macintosh", 3),
    ("Wifi", 2),
    ("Smart TV", 1),
    ("Location", 1),
];

const MANUFACTURERS: &[&str] = &[
    "Dell Inc.",
    "HP",
    "Lenovo",
    "VMware, Inc.",
    "Apple",
    "Cisco",
    "Synology",
];
const MODELS: &[&str] = &[
    "OptiPlex 7090",
    "EliteBook 840",
    "ThinkPad T14",
    "VMware7,1",
    "iPad Air",
    "Catalyst 9300",
    "DS920+",
    "DeskJet 530",
];
const STATES: &[&str] = &[
    "Active",
    "Active",
    "Active",
    "Active",
    "Non-active",
    "Sold",
    "Stolen",
    "Broken",
    "Don't show",
    "Spare",
    "In repair",
    "Stock",
    "Retired",
];
const SOFTWARE: &[&str] = &[
    "Microsoft Office 365",
    "Google Chrome",
    "Mozilla Firefox",
    "7-Zip 19.00",
    "Adobe Acrobat Reader DC",
    "Visual Studio Code",
    "Zoom",
    "Slack",
    "Notepad++",
    "VLC media player",
    "Git",
    "Python 3.11",
    "OpenSSL",
    "curl",
    "Microsoft Teams",
    "TeamViewer",
];
const WINDOWS_OS: &[(&str, &str, &str)] = &[
    (
        "Microsoft Windows 10 Enterprise",
        "Windows 10 Enterprise",
        "2025-10-14T00:00:00.000Z",
    ),
    (
        "Microsoft Windows 11 Pro",
        "Windows 11 Pro",
        "2027-10-12T00:00:00.000Z",
    ),
    (
        "Microsoft Windows Server 2012 R2 Standard",
        "Windows Server 2012 R2",
        "2023-10-10T16:00:00.000Z",
    ),
];
const LINUX_OS: &[&str] = &[
    "Ubuntu 22.04.3 LTS",
    "Debian GNU/Linux 12",
    "Rocky Linux 9.2",
];
const USERS: &[(&str, Option<&str>, &str)] = &[
    ("jdoe", Some("john.doe@example.com"), "John Doe"),
    ("asmith", Some("anna.smith@example.com"), "Anna Smith"),
    ("Administrator", None, "Administrator"),
    ("bwayne", None, "Bruce Wayne"),
    ("ckent", Some("clark.kent@example.com"), "Clark Kent"),
];

/// SplitMix64: a tiny, good-enough deterministic mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rnd(site: &SiteData, index: u64, salt: u64) -> u64 {
    mix(site.seed ^ mix(index ^ mix(salt)))
}

fn pick<T: Copy>(items: &[T], r: u64) -> T {
    items[(r % items.len() as u64) as usize]
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The filterable part of an asset.
#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub asset_type: &'static str,
    pub ip_address: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub installation: usize,
}

/// The filterable core of asset `index` of `site`.
pub(crate) fn core(site: &SiteData, index: u64) -> Core {
    let r = rnd(site, index, 1);
    let mut bucket = r % 100;
    let mut asset_type = "Unknown";
    for (name, share) in ASSET_TYPES {
        if bucket < *share {
            asset_type = name;
            break;
        }
        bucket -= share;
    }
    let ip_share = match asset_type {
        "Monitor" | "Location" => 0,
        "iPad" => 50,
        _ => 95,
    };
    let ip_address = (rnd(site, index, 2) % 100 < ip_share).then(|| {
        let n = mix(index);
        format!(
            "10.{}.{}.{}",
            (index >> 16) & 0xff,
            (index >> 8) & 0xff,
            n % 250 + 1
        )
    });
    // 90 % seen within the last 20 days, 5 % stale (40–400 days), 5 % never seen.
    let seen = rnd(site, index, 3);
    let last_seen = match seen % 100 {
        0..90 => Some(site.now - ChronoDuration::seconds(((seen >> 8) % (20 * 86_400)) as i64)),
        90..95 => Some(site.now - ChronoDuration::days(40 + ((seen >> 8) % 360) as i64)),
        _ => None,
    };
    let installation = if site.installations.is_empty() {
        0
    } else {
        (index % site.installations.len() as u64) as usize
    };
    Core {
        asset_type,
        ip_address,
        last_seen,
        installation,
    }
}

/// The full JSON item of asset `index` of `site` (all fields the integration can request).
pub(crate) fn asset(site: &SiteData, index: u64) -> Value {
    let c = core(site, index);
    let key = format!("{}-{index:06}", site.id);
    let mut basic = Map::new();
    basic.insert(
        "name".into(),
        json!(format!(
            "{}-{index:06}",
            c.asset_type.replace(' ', "-").to_uppercase()
        )),
    );
    basic.insert("type".into(), json!(c.asset_type));
    basic.insert(
        "description".into(),
        json!(format!("Generated {} asset {index}", c.asset_type)),
    );
    if let Some(ip) = &c.ip_address {
        basic.insert("ipAddress".into(), json!(ip));
    }
    let first_seen = site.now - ChronoDuration::days(400 + (rnd(site, index, 4) % 300) as i64);
    basic.insert("firstSeen".into(), json!(iso(first_seen)));
    if let Some(seen) = c.last_seen {
        basic.insert("lastSeen".into(), json!(iso(seen)));
        basic.insert("lastChanged".into(), json!(iso(seen)));
    }
    let user_pick = rnd(site, index, 5);
    let users: Vec<Value> = (0..user_pick % 3)
        .map(|k| {
            let (name, email, full) = pick(USERS, user_pick >> (8 + 4 * k));
            let mut u = json!({"name": name, "fullName": full});
            if let Some(e) = email {
                u["email"] = json!(e);
            }
            u
        })
        .collect();
    if let Some(first) = users.first() {
        basic.insert("userName".into(), first["name"].clone());
        basic.insert("userDomain".into(), json!("EXAMPLE"));
    }
    let mut item = Map::new();
    item.insert("_id".into(), json!(format!("id-{key}")));
    item.insert("key".into(), json!(key));
    item.insert(
        "url".into(),
        json!(format!(
            "https://app.lansweeper.com/{}/asset/{key}/summary",
            site.id
        )),
    );
    item.insert(
        "installationId".into(),
        json!(site.installation_id(c.installation)),
    );
    item.insert("assetBasicInfo".into(), Value::Object(basic));

    let custom = rnd(site, index, 6);
    if !custom.is_multiple_of(50) {
        let purchase = site.now - ChronoDuration::days(100 + (custom >> 8) as i64 % 1500);
        let warranty = purchase + ChronoDuration::days(365 * (1 + (custom >> 20) as i64 % 4));
        let mut c_map = Map::new();
        c_map.insert(
            "manufacturer".into(),
            json!(pick(MANUFACTURERS, custom >> 3)),
        );
        c_map.insert("model".into(), json!(pick(MODELS, custom >> 13)));
        c_map.insert("stateName".into(), json!(pick(STATES, custom >> 23)));
        c_map.insert("purchaseDate".into(), json!(iso(purchase)));
        c_map.insert("warrantyDate".into(), json!(iso(warranty)));
        c_map.insert(
            "serialNumber".into(),
            json!(format!("SN{:010}", custom % 10_000_000_000)),
        );
        if (custom >> 33).is_multiple_of(4) {
            c_map.insert("sku".into(), json!(format!("SKU-{}", (custom >> 35) % 20)));
        }
        item.insert("assetCustom".into(), Value::Object(c_map));
    }

    let os = rnd(site, index, 7);
    match c.asset_type {
        "Windows" | "VMware Guest" | "Virtual Machine" => {
            let (name, meta, eos) = pick(WINDOWS_OS, os);
            item.insert("operatingSystem".into(), json!({"name": name}));
            item.insert(
                "recognitionInfo".into(),
                json!({"osMetadata": {"name": meta, "endOfSupportDate": eos}}),
            );
        }
        "Linux" | "Webserver" => {
            item.insert(
                "operatingSystem".into(),
                json!({"name": pick(LINUX_OS, os)}),
            );
        }
        _ => {}
    }
    if matches!(
        c.asset_type,
        "Windows" | "Linux" | "VMware Guest" | "Virtual Machine" | "Webserver" | "Macintosh"
    ) {
        let sw = rnd(site, index, 8);
        let softwares: Vec<Value> = (0..sw % 6)
            .map(|k| json!({"name": pick(SOFTWARE, sw >> (4 + 4 * k))}))
            .collect();
        item.insert("softwares".into(), Value::Array(softwares));
        let gib = 1u64 << (2 + os % 4);
        item.insert(
            "memoryModules".into(),
            json!([{"size": gib * 512 * 1024 * 1024}, {"size": gib * 512 * 1024 * 1024}]),
        );
        item.insert(
            "processors".into(),
            json!([{"numberOfCores": 2 + (os >> 5) % 4 * 2}]),
        );
        item.insert("users".into(), Value::Array(users));
    } else if !users.is_empty() {
        item.insert("users".into(), Value::Array(users));
    }
    Value::Object(item)
}

/// Keeps only the dotted `paths` of `value` (arrays are mapped element-wise).
pub(crate) fn project(value: &Value, paths: &[Vec<&str>]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, paths)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let mut whole = false;
                let mut rest: Vec<Vec<&str>> = Vec::new();
                for p in paths.iter().filter(|p| p.first() == Some(&key.as_str())) {
                    if p.len() == 1 {
                        whole = true;
                    } else {
                        rest.push(p[1..].to_vec());
                    }
                }
                if whole {
                    out.insert(key.clone(), v.clone());
                } else if !rest.is_empty() {
                    out.insert(key.clone(), project(v, &rest));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Filter operators of the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Equal,
    NotEqual,
    Exists,
    GreaterThan,
    LessThan,
    Regexp,
}

/// A validated filter tree.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Cond { op: Op, path: String, value: String },
}

/// Paths the fake can filter on.
pub(crate) const FILTER_PATHS: &[&str] = &[
    "assetBasicInfo.type",
    "assetBasicInfo.ipAddress",
    "assetBasicInfo.lastSeen",
    "installationId",
];

/// Compiles a `REGEXP` condition value as Lansweeper evaluates it: a regular expression
/// matched case-insensitively anywhere in the field (so `server` also matches `Webserver`;
/// anchor with `^...$` to match whole values).
pub(crate) fn compile_regex(value: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(value)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression {value:?}: {e}"))
}

impl Filter {
    /// Whether asset `core` of `site` passes.
    pub(crate) fn matches(&self, site: &SiteData, core: &Core) -> bool {
        match self {
            Filter::All(items) => items.iter().all(|f| f.matches(site, core)),
            Filter::Any(items) => items.iter().any(|f| f.matches(site, core)),
            Filter::Cond { op, path, value } => {
                let field: Option<String> = match path.as_str() {
                    "assetBasicInfo.type" => Some(core.asset_type.to_owned()),
                    "assetBasicInfo.ipAddress" => core.ip_address.clone(),
                    "assetBasicInfo.lastSeen" => core.last_seen.map(iso),
                    "installationId" => Some(site.installation_id(core.installation)),
                    _ => None,
                };
                match op {
                    Op::Exists => field.is_some() == (value == "true"),
                    Op::Equal => field.as_deref() == Some(value.as_str()),
                    Op::NotEqual => field.as_deref() != Some(value.as_str()),
                    Op::GreaterThan | Op::LessThan => {
                        let ordering = match (path.as_str(), field) {
                            ("assetBasicInfo.lastSeen", Some(_)) => {
                                match (core.last_seen, DateTime::parse_from_rfc3339(value)) {
                                    (Some(seen), Ok(cut)) => {
                                        Some(seen.cmp(&cut.with_timezone(&chrono::Utc)))
                                    }
                                    _ => None,
                                }
                            }
                            (_, Some(f)) => Some(f.as_str().cmp(value.as_str())),
                            _ => None,
                        };
                        ordering
                            == Some(if *op == Op::GreaterThan {
                                std::cmp::Ordering::Greater
                            } else {
                                std::cmp::Ordering::Less
                            })
                    }
                    Op::Regexp => match (field, compile_regex(value)) {
                        (Some(f), Ok(regex)) => regex.is_match(&f),
                        _ => false,
                    },
                }
            }
        }
    }
}

/// Number of assets of `site` matching `filter`.
pub(crate) fn count(site: &SiteData, filter: Option<&Filter>) -> u64 {
    match filter {
        None => site.asset_count,
        Some(f) => (0..site.asset_count)
            .filter(|i| f.matches(site, &core(site, *i)))
            .count() as u64,
    }
}

/// Up to `limit` indices of matching assets starting at `from`, and the index to continue from
/// (`None` when the site is exhausted).
pub(crate) fn page(
    site: &SiteData,
    filter: Option<&Filter>,
    from: u64,
    limit: usize,
) -> (Vec<u64>, Option<u64>) {
    let mut found = Vec::with_capacity(limit);
    let mut i = from;
    while i < site.asset_count && found.len() < limit {
        if filter.is_none_or(|f| f.matches(site, &core(site, i))) {
            found.push(i);
        }
        i += 1;
    }
    // Look ahead so that the last page has no `next`.
    let mut j = i;
    while j < site.asset_count && !filter.is_none_or(|f| f.matches(site, &core(site, j))) {
        j += 1;
    }
    (found, (j < site.asset_count).then_some(j))
}

/// Exposed for the handle: does installation `id` exist in `site`?
pub(crate) fn has_installation(site: &SiteData, id: &str) -> bool {
    site.installation_index(id).is_some()
}
