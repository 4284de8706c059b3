//! Seeded demo data, derived on demand from a hash of (kind, index).
//!
//! Nothing is random and nothing is stored: the same id always yields the same record, across
//! runs and across services, so the catalog, recommendations and orders agree on a product's name
//! and price without sharing state, and tests can rely on exact values.

use serde_json::{Map, Value, json};

pub(crate) const USERS: u64 = 1000;
pub(crate) const PRODUCTS: u64 = 5000;

/// The seeded past is anchored to a fixed instant rather than "now" so it stays identical between
/// runs; it lies in the past so "created" dates look plausible.
const EPOCH_BASE: i64 = 1_759_276_800; // 2025-10-01T00:00:00Z

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed 64-bit value for one attribute (`kind`) of one record (`index`).
pub(crate) fn hash(kind: &str, index: u64) -> u64 {
    // FNV-1a folds the kind into a seed, so different attributes of one record are independent.
    let seed = kind.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    splitmix64(seed ^ splitmix64(index))
}

fn pick<'a>(kind: &str, index: u64, options: &[&'a str]) -> &'a str {
    let len = options.len().max(1) as u64;
    options.get((hash(kind, index) % len) as usize).copied().unwrap_or_default()
}

/// The number in a canonical id like `u-42` when it is within `1..=max`. Only the canonical
/// spelling is accepted (no `u-042`, `u-+4`), so each record has exactly one id.
pub(crate) fn parse_id(prefix: &str, id: &str, max: u64) -> Option<u64> {
    let digits = id.strip_prefix(prefix)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|n| (1..=max).contains(n))
}

pub(crate) fn user_index(id: &str) -> Option<u64> {
    parse_id("u-", id, USERS)
}

pub(crate) fn product_index(id: &str) -> Option<u64> {
    parse_id("p-", id, PRODUCTS)
}

/// RFC 3339 in UTC for seconds since the Unix epoch (the civil-from-days algorithm, so no date
/// crate is needed).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// Users

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Sophie",
    "John",
    "Katherine",
    "Tim",
    "Hedy",
    "Niklaus",
    "Joan",
    "Bjarne",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Wilson",
    "Backus",
    "Johnson",
    "Berners-Lee",
    "Lamarr",
    "Wirth",
    "Clarke",
    "Stroustrup",
];
const KYC: &[&str] = &["verified", "verified", "verified", "pending", "unverified", "rejected"];
const NOTES: &[&str] = &[
    "Chargeback filed in 2024; monitor refunds.",
    "VIP: escalate support tickets.",
    "Requested account deletion once, then withdrew.",
    "Flagged by fraud model v3 (false positive).",
    "No notes.",
];

/// The full user record, internal fields included: the users service sends them on purpose so the
/// tests can prove no BFF passes them on.
pub(crate) fn user(n: u64) -> Value {
    let first = pick("user.first", n, FIRST_NAMES);
    let last = pick("user.last", n, LAST_NAMES);
    let email_last = last.to_ascii_lowercase().replace('-', "");
    json!({
        "id": format!("u-{n}"),
        "name": format!("{first} {last}"),
        "email": format!("{}.{email_last}{n}@example.com", first.to_ascii_lowercase()),
        "avatar_url": format!("https://img.example.com/avatars/u-{n}.png"),
        "created_at": rfc3339(EPOCH_BASE - 86_400 * 400 - (hash("user.created", n) % (86_400 * 1000)) as i64),
        "internal_risk_score": (hash("user.risk", n) % 1000) as f64 / 1000.0,
        "internal_notes": pick("user.notes", n, NOTES),
        "kyc_status": pick("user.kyc", n, KYC),
    })
}

// ---------------------------------------------------------------------------------------------
// Products

const ADJECTIVES: &[&str] =
    &["Classic", "Ultra", "Compact", "Eco", "Pro", "Deluxe", "Smart", "Rugged", "Vintage", "Nimble", "Silent", "Bold"];
const NOUNS: &[(&str, &str, &str)] = &[
    ("Headphones", "Electronics", "Audio"),
    ("Speaker", "Electronics", "Audio"),
    ("Keyboard", "Electronics", "Computer Accessories"),
    ("Backpack", "Bags", "Travel"),
    ("Water Bottle", "Outdoors", "Hydration"),
    ("Running Shoes", "Apparel", "Footwear"),
    ("Jacket", "Apparel", "Outerwear"),
    ("Desk Lamp", "Home", "Lighting"),
    ("Coffee Grinder", "Kitchen", "Coffee"),
    ("Chef Knife", "Kitchen", "Cutlery"),
    ("Yoga Mat", "Sports", "Fitness"),
    ("Tent", "Outdoors", "Camping"),
];
const BRANDS: &[&str] = &["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Soylent"];
const COLORS: &[&str] = &["black", "white", "red", "blue", "green", "grey", "navy", "orange", "olive"];
const MATERIALS: &[&str] = &["aluminium", "steel", "cotton", "polyester", "leather", "bamboo", "plastic", "wool"];
const SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "one size"];
const TAGS: &[&str] =
    &["new", "bestseller", "eco", "gift", "limited", "sale", "premium", "outdoor", "travel", "home", "classic"];
const COUNTRIES: &[&str] = &["US", "DE", "JP", "CN", "VN", "MX", "IT", "PT", "KR"];
const SHIPPING: &[&str] = &["standard", "standard", "oversize", "fragile", "express-only"];
const RETURNS: &[&str] = &["30-day free returns", "14-day returns", "final sale", "60-day free returns"];
const TAX: &[&str] = &["standard", "reduced", "exempt"];

fn product_noun(n: u64) -> (&'static str, &'static str, &'static str) {
    NOUNS.get((hash("product.noun", n) % NOUNS.len() as u64) as usize).copied().unwrap_or(("Thing", "Misc", "Misc"))
}

/// The product's display name; orders and recommendations use it without building the full record.
pub(crate) fn product_name(n: u64) -> String {
    format!("{} {} {}", pick("product.brand", n, BRANDS), pick("product.adj", n, ADJECTIVES), product_noun(n).0)
}

pub(crate) fn product_price_cents(n: u64) -> i64 {
    // 1.99 to about 500.00, always ending in 9 like real shop prices.
    (199 + (hash("product.price", n) % 50_000) as i64) / 10 * 10 + 9
}

/// The full product record: about forty fields, internal ones included.
pub(crate) fn product(n: u64) -> Map<String, Value> {
    let (noun, category, subcategory) = product_noun(n);
    let brand = pick("product.brand", n, BRANDS);
    let price = product_price_cents(n);
    let discount = (hash("product.discount", n) % 40) as i64;
    let list_price = price * 100 / (100 - discount);
    let created = EPOCH_BASE - 86_400 * 30 - (hash("product.created", n) % (86_400 * 900)) as i64;
    let updated = created + (hash("product.updated", n) % (86_400 * 25)) as i64;
    let tag_count = 1 + hash("product.tags", n) % 4;
    let mut tags: Vec<&str> = Vec::new();
    for i in 0..tag_count {
        let tag = pick("product.tag", n * 8 + i, TAGS);
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let min_qty = 1 + hash("product.minqty", n) % 2;
    let warranty = [0, 6, 12, 24, 36][(hash("product.warranty", n) % 5) as usize];
    let value = json!({
        "id": format!("p-{n}"),
        "sku": format!("SKU-{:06}", n),
        "name": product_name(n),
        "description": format!(
            "A {} {} from {brand}, made of {}. Designed for everyday use.",
            pick("product.adj", n, ADJECTIVES).to_ascii_lowercase(),
            noun.to_ascii_lowercase(),
            pick("product.material", n, MATERIALS),
        ),
        "brand": brand,
        "category": category,
        "subcategory": subcategory,
        "price_cents": price,
        "currency": "USD",
        "list_price_cents": list_price,
        "discount_pct": discount,
        "rating": 1.0 + (hash("product.rating", n) % 41) as f64 / 10.0,
        "review_count": hash("product.reviews", n) % 5000,
        "image_url": format!("https://img.example.com/products/p-{n}.jpg"),
        "thumbnail_url": format!("https://img.example.com/products/p-{n}-thumb.jpg"),
        "weight_grams": 50 + hash("product.weight", n) % 5000,
        "width_mm": 20 + hash("product.width", n) % 600,
        "height_mm": 20 + hash("product.height", n) % 600,
        "depth_mm": 10 + hash("product.depth", n) % 400,
        "color": pick("product.color", n, COLORS),
        "material": pick("product.material", n, MATERIALS),
        "size": pick("product.size", n, SIZES),
        "tags": tags,
        "created_at": rfc3339(created),
        "updated_at": rfc3339(updated),
        "is_active": !hash("product.active", n).is_multiple_of(20),
        "is_featured": hash("product.featured", n).is_multiple_of(10),
        "warranty_months": warranty,
        "origin_country": pick("product.origin", n, COUNTRIES),
        "manufacturer": format!("{brand} Manufacturing Co."),
        "model_number": format!("{}-{}", brand.to_ascii_uppercase(), 1000 + hash("product.model", n) % 9000),
        "ean": format!("{:013}", hash("product.ean", n) % 10_000_000_000_000),
        "upc": format!("{:012}", hash("product.upc", n) % 1_000_000_000_000),
        "shipping_class": pick("product.shipping", n, SHIPPING),
        "return_policy": pick("product.returns", n, RETURNS),
        "min_order_qty": min_qty,
        "max_order_qty": min_qty + 9 + hash("product.maxqty", n) % 90,
        "tax_class": pick("product.tax", n, TAX),
        "internal_cost_cents": price * (40 + (hash("product.cost", n) % 30) as i64) / 100,
        "internal_supplier_id": format!("sup-{}", 1 + hash("product.supplier", n) % 200),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Orders and recommendations

/// One seeded order, before it is turned into the gRPC message.
pub(crate) struct SeededOrder {
    pub id: String,
    pub status: i32,
    pub created_at: i64,
    /// (product index, quantity, unit price)
    pub items: Vec<(u64, i32, i64)>,
}

/// How many seeded orders user `n` has (0..=50).
pub(crate) fn order_count(user: u64) -> u64 {
    hash("orders.count", user) % 51
}

/// Seeded order `k` (1-based, higher is newer) of user `n`. The caller checks `k` is in range.
pub(crate) fn seeded_order(user: u64, k: u64) -> SeededOrder {
    let key = user * 64 + k;
    let count = order_count(user);
    // Three days apart with less than a day of jitter keeps a newer k strictly newer.
    let created_at =
        EPOCH_BASE - (count.saturating_sub(k) as i64) * 3 * 86_400 - (hash("order.jitter", key) % 86_000) as i64;
    let item_count = 1 + hash("order.items", key) % 8;
    let items = (0..item_count)
        .map(|i| {
            let product = 1 + hash("order.product", key * 8 + i) % PRODUCTS;
            let quantity = 1 + (hash("order.qty", key * 8 + i) % 5) as i32;
            (product, quantity, product_price_cents(product))
        })
        .collect();
    // Statuses 1..=5: PENDING, PAID, SHIPPED, DELIVERED, CANCELLED.
    let status = 1 + (hash("order.status", key) % 5) as i32;
    SeededOrder { id: format!("o-{user}-{k}"), status, created_at, items }
}

/// `o-N-K` back to (N, K) when that seeded order exists.
pub(crate) fn parse_seeded_order_id(id: &str) -> Option<(u64, u64)> {
    let rest = id.strip_prefix("o-")?;
    let (user, k) = rest.split_once('-')?;
    let user = parse_id("", user, USERS)?;
    let k = parse_id("", k, 50)?;
    (k <= order_count(user)).then_some((user, k))
}

/// The user's recommendations, best first; a shorter limit yields a prefix of a longer one.
pub(crate) fn recommendations(user: u64, limit: usize) -> Vec<Value> {
    picks("rec.product", user, limit, None)
}

/// Products like `product` (never itself), best first.
pub(crate) fn similar_products(product: u64, limit: usize) -> Vec<Value> {
    picks("rec.similar", product, limit, Some(product))
}

fn picks(kind: &str, seed: u64, limit: usize, exclude: Option<u64>) -> Vec<Value> {
    let mut seen: Vec<u64> = Vec::with_capacity(limit);
    let mut attempt = 0;
    while seen.len() < limit && attempt < 1000 {
        let product = 1 + hash(kind, seed * 1024 + attempt) % PRODUCTS;
        attempt += 1;
        if !seen.contains(&product) && exclude != Some(product) {
            seen.push(product);
        }
    }
    seen.into_iter()
        .enumerate()
        .map(|(rank, product)| {
            let jitter = (hash("rec.score", seed * 1024 + rank as u64) % 10) as f64 / 1000.0;
            let score = ((0.99 - rank as f64 * 0.018 - jitter) * 1000.0).round() / 1000.0;
            json!({
                "product_id": format!("p-{product}"),
                "name": product_name(product),
                "price_cents": product_price_cents(product),
                "score": score,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ids() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(user_index("u-1000"), Some(1000));
        assert_eq!(user_index("u-1001"), None);
        assert_eq!(user_index("u-01"), None);
        assert_eq!(product_index("p-0"), None);
        assert!(product(7).len() >= 40);
        let order = seeded_order(3, 1);
        assert!(order.items.len() <= 8);
    }
}
