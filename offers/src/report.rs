//! Uplift per offer: the response rate of customers who were sent the offer against
//! that of its control group (`control:`), whose matches were recorded but not
//! delivered. A customer converted when an `offer_response` with outcome `positive`
//! for the offer arrived at or after her first match of it: for the control group that
//! is the bank attributing the product to the campaign's audience (she took the car
//! loan without being told), which is what makes the comparison meaningful.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::customer::Customer;

/// One offer's groups.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Uplift {
    pub offer: String,
    pub treated: u64,
    pub treated_converted: u64,
    pub control: u64,
    pub control_converted: u64,
}

impl Uplift {
    pub fn treated_rate(&self) -> Option<f64> {
        rate(self.treated_converted, self.treated)
    }

    pub fn control_rate(&self) -> Option<f64> {
        rate(self.control_converted, self.control)
    }

    /// Treated rate minus control rate, when both groups have customers.
    pub fn uplift(&self) -> Option<f64> {
        Some(self.treated_rate()? - self.control_rate()?)
    }
}

fn rate(converted: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| converted as f64 / n as f64)
}

/// Uplift of every offer the customers were matched to, by offer name.
pub fn uplift<'a>(customers: impl IntoIterator<Item = &'a Customer>) -> Vec<Uplift> {
    let mut by_offer: BTreeMap<String, Uplift> = BTreeMap::new();
    for c in customers {
        // Her first match of each offer, and in which group.
        let mut first: BTreeMap<&str, (i64, bool)> = BTreeMap::new();
        for s in &c.sent {
            let entry = first.entry(&s.offer).or_insert((s.at, s.control));
            if s.at < entry.0 {
                *entry = (s.at, s.control);
            }
        }
        for (offer, (at, control)) in first {
            let converted = c
                .responses
                .iter()
                .any(|r| r.offer == offer && r.outcome == "positive" && r.at >= at);
            let u = by_offer.entry(offer.to_owned()).or_insert_with(|| Uplift {
                offer: offer.to_owned(),
                ..Uplift::default()
            });
            if control {
                u.control += 1;
                u.control_converted += u64::from(converted);
            } else {
                u.treated += 1;
                u.treated_converted += u64::from(converted);
            }
        }
    }
    by_offer.into_values().collect()
}
