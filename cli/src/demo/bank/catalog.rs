//! The bank's static world: names, cities, malls, merchants and transaction codes.
//!
//! Everything here is a plain table so that the generator draws indices, never builds
//! strings per record, and so that the Source specs can be checked against it.

/// A merchant category, written as the four-digit code the core system uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mcc {
    Fuel,
    Dining,
    Grocery,
    Transport,
    Electronics,
    Shopping,
    Utilities,
    Atm,
    Transfer,
    Salary,
    Interest,
}

impl Mcc {
    /// Every code, so the spec's lookup table can be checked for coverage.
    #[cfg(test)]
    pub(super) const ALL: [Mcc; 11] = [
        Mcc::Fuel,
        Mcc::Dining,
        Mcc::Grocery,
        Mcc::Transport,
        Mcc::Electronics,
        Mcc::Shopping,
        Mcc::Utilities,
        Mcc::Atm,
        Mcc::Transfer,
        Mcc::Salary,
        Mcc::Interest,
    ];

    pub(super) fn code(self) -> &'static str {
        match self {
            Mcc::Fuel => "5541",
            Mcc::Dining => "5812",
            Mcc::Grocery => "5411",
            Mcc::Transport => "4111",
            Mcc::Electronics => "5732",
            Mcc::Shopping => "5999",
            Mcc::Utilities => "4900",
            Mcc::Atm => "6011",
            Mcc::Transfer => "4829",
            Mcc::Salary => "9001",
            Mcc::Interest => "9002",
        }
    }

    /// The canonical category the spec's `mcc` lookup must map the code to.
    #[cfg(test)]
    pub(super) fn category(self) -> &'static str {
        match self {
            Mcc::Fuel => "fuel",
            Mcc::Dining => "dining",
            Mcc::Grocery => "grocery",
            Mcc::Transport => "transport",
            Mcc::Electronics => "electronics",
            Mcc::Shopping => "shopping",
            Mcc::Utilities => "utilities",
            Mcc::Atm => "atm",
            Mcc::Transfer => "transfer",
            Mcc::Salary => "salary",
            Mcc::Interest => "interest",
        }
    }

    pub(super) fn is_credit(self) -> bool {
        matches!(self, Mcc::Salary | Mcc::Interest)
    }

    /// Amount range in rupees for one everyday debit of this kind.
    pub(super) fn rupees(self) -> (u32, u32) {
        match self {
            Mcc::Fuel => (500, 2500),
            Mcc::Dining => (200, 3000),
            Mcc::Grocery => (300, 4000),
            Mcc::Transport => (50, 800),
            Mcc::Electronics => (2000, 60000),
            Mcc::Shopping => (500, 8000),
            Mcc::Utilities => (500, 5000),
            Mcc::Atm => (500, 10000),
            Mcc::Transfer => (100, 20000),
            Mcc::Salary | Mcc::Interest => (0, 0),
        }
    }
}

/// Debit categories drawn for everyday spending (fuel is a habit, drawn apart).
pub(super) const EVERYDAY: [Mcc; 8] = [
    Mcc::Dining,
    Mcc::Grocery,
    Mcc::Transport,
    Mcc::Shopping,
    Mcc::Transfer,
    Mcc::Atm,
    Mcc::Utilities,
    Mcc::Electronics,
];
/// Relative weights of `EVERYDAY` for most customers.
pub(super) const EVERYDAY_WEIGHTS: [u16; 8] = [25, 20, 15, 12, 12, 6, 4, 2];
/// A retired saver spends on groceries, bills and the odd transfer.
pub(super) const SAVER_WEIGHTS: [u16; 8] = [8, 35, 5, 10, 20, 5, 17, 0];

/// Who appears in the narration of a card or UPI debit, per category.
pub(super) fn payees(mcc: Mcc) -> &'static [&'static str] {
    match mcc {
        Mcc::Fuel => &["SHELL", "INDIAN OIL", "HP PETROL", "BHARAT PETROLEUM"],
        Mcc::Dining => &["SWIGGY", "ZOMATO", "BARBEQUE NATION", "CAFE COFFEE DAY"],
        Mcc::Grocery => &["BIGBASKET", "DMART", "RELIANCE FRESH", "MORE RETAIL"],
        Mcc::Transport => &["UBER INDIA", "OLA CABS", "METRO RAIL", "IRCTC"],
        Mcc::Electronics => &["CROMA", "RELIANCE DIGITAL", "VIJAY SALES"],
        Mcc::Shopping => &["AMAZON PAY", "FLIPKART", "MYNTRA", "LIFESTYLE"],
        Mcc::Utilities => &["TATA POWER", "AIRTEL", "JIO", "MAHANAGAR GAS"],
        Mcc::Atm | Mcc::Transfer => &["GPAY", "PHONEPE", "PAYTM"],
        Mcc::Salary => &["ACME LTD", "INFOSYS LTD", "TATA CONSULTANCY", "WIPRO LTD", "HDFC LIFE"],
        Mcc::Interest => &["SB INTEREST"],
    }
}

#[derive(Debug)]
pub(super) struct FirstName {
    pub name: &'static str,
    pub gender: char,
}

const fn f(name: &'static str) -> FirstName {
    FirstName { name, gender: 'F' }
}
const fn m(name: &'static str) -> FirstName {
    FirstName { name, gender: 'M' }
}

#[rustfmt::skip]
pub(super) const FIRST_NAMES: [FirstName; 60] = [
    f("Saanvi"), f("Aadhya"), f("Ananya"), f("Diya"), f("Ishita"), f("Kavya"),
    f("Meera"), f("Myra"), f("Nisha"), f("Pooja"), f("Priya"), f("Riya"),
    f("Sneha"), f("Tanvi"), f("Aditi"), f("Anjali"), f("Deepa"), f("Divya"),
    f("Gauri"), f("Lakshmi"), f("Neha"), f("Pallavi"), f("Radhika"), f("Shreya"),
    f("Sunita"), f("Swati"), f("Vidya"), f("Zara"), f("Fatima"), f("Harpreet"),
    m("Arjun"), m("Aarav"), m("Vivaan"), m("Aditya"), m("Vihaan"), m("Rohan"),
    m("Kabir"), m("Ishaan"), m("Rahul"), m("Amit"), m("Vikram"), m("Sanjay"),
    m("Karthik"), m("Nikhil"), m("Pranav"), m("Rajesh"), m("Suresh"), m("Manoj"),
    m("Arnav"), m("Dhruv"), m("Harsh"), m("Kunal"), m("Mohit"), m("Naveen"),
    m("Rakesh"), m("Siddharth"), m("Varun"), m("Yash"), m("Imran"), m("Gurpreet"),
];

#[rustfmt::skip]
pub(super) const LAST_NAMES: [&str; 40] = [
    "Sarkar", "Mehta", "Iyer", "Das", "Sharma", "Verma", "Gupta", "Singh", "Patel",
    "Shah", "Reddy", "Rao", "Nair", "Menon", "Pillai", "Kumar", "Joshi", "Kulkarni",
    "Deshpande", "Chatterjee", "Banerjee", "Mukherjee", "Bose", "Ghosh", "Agarwal",
    "Jain", "Malhotra", "Kapoor", "Chopra", "Bhat", "Naidu", "Krishnan", "Srinivasan",
    "Pandey", "Mishra", "Tiwari", "Saxena", "Khan", "Fernandes", "Dutta",
];

pub(super) const EMAIL_DOMAINS: [&str; 5] = [
    "gmail.com",
    "yahoo.co.in",
    "outlook.com",
    "rediffmail.com",
    "hotmail.com",
];

/// A merchant where a card is swiped.
#[derive(Debug)]
pub(super) struct Merchant {
    pub name: &'static str,
    pub mcc: Mcc,
}

const fn shop(name: &'static str, mcc: Mcc) -> Merchant {
    Merchant { name, mcc }
}

/// A mall: its name, its city (index into `CITIES`) and the merchants in it.
#[derive(Debug)]
pub(super) struct Mall {
    pub name: &'static str,
    pub city: usize,
    pub merchants: &'static [Merchant],
}

const PHOENIX: &[Merchant] = &[
    shop("Starbucks", Mcc::Dining),
    shop("Social", Mcc::Dining),
    shop("Zara", Mcc::Shopping),
    shop("H&M", Mcc::Shopping),
    shop("Lifestyle", Mcc::Shopping),
    shop("Croma", Mcc::Electronics),
];
const HIGH_STREET_MALL: &[Merchant] = &[
    shop("Haldiram's", Mcc::Dining),
    shop("Starbucks", Mcc::Dining),
    shop("Westside", Mcc::Shopping),
    shop("Pantaloons", Mcc::Shopping),
    shop("Hypercity", Mcc::Grocery),
    shop("Reliance Digital", Mcc::Electronics),
];
const LULU: &[Merchant] = &[
    shop("Lulu Hypermarket", Mcc::Grocery),
    shop("Paragon Restaurant", Mcc::Dining),
    shop("Max Fashion", Mcc::Shopping),
    shop("Lulu Connect", Mcc::Electronics),
];

/// Cities, in the order `City::malls` and `Mall::city` refer to them.
#[derive(Debug)]
pub(super) struct City {
    pub name: &'static str,
    pub branch: &'static str,
    pub malls: &'static [usize],
}

pub(super) const CITIES: [City; 10] = [
    City {
        name: "Mumbai",
        branch: "MUM",
        malls: &[0, 1],
    },
    City {
        name: "Bengaluru",
        branch: "BLR",
        malls: &[2, 3],
    },
    City {
        name: "Delhi",
        branch: "DEL",
        malls: &[4],
    },
    City {
        name: "Hyderabad",
        branch: "HYD",
        malls: &[5],
    },
    City {
        name: "Chennai",
        branch: "CHE",
        malls: &[6],
    },
    City {
        name: "Pune",
        branch: "PUN",
        malls: &[7],
    },
    City {
        name: "Kolkata",
        branch: "KOL",
        malls: &[8],
    },
    City {
        name: "Kochi",
        branch: "COK",
        malls: &[9],
    },
    City {
        name: "Noida",
        branch: "NOI",
        malls: &[10],
    },
    City {
        name: "Ahmedabad",
        branch: "AMD",
        malls: &[11],
    },
];

pub(super) const MUMBAI: usize = 0;
pub(super) const BENGALURU: usize = 1;
pub(super) const CHENNAI: usize = 4;
pub(super) const KOLKATA: usize = 6;
/// Phoenix Marketcity in Bengaluru: Arjun's mall.
pub(super) const PHOENIX_BENGALURU: usize = 2;

pub(super) const MALLS: [Mall; 12] = [
    Mall {
        name: "Phoenix Marketcity",
        city: 0,
        merchants: PHOENIX,
    },
    Mall {
        name: "Inorbit Mall",
        city: 0,
        merchants: HIGH_STREET_MALL,
    },
    Mall {
        name: "Phoenix Marketcity",
        city: 1,
        merchants: PHOENIX,
    },
    Mall {
        name: "Orion Mall",
        city: 1,
        merchants: HIGH_STREET_MALL,
    },
    Mall {
        name: "Select Citywalk",
        city: 2,
        merchants: PHOENIX,
    },
    Mall {
        name: "Inorbit Mall",
        city: 3,
        merchants: HIGH_STREET_MALL,
    },
    Mall {
        name: "Express Avenue",
        city: 4,
        merchants: HIGH_STREET_MALL,
    },
    Mall {
        name: "Phoenix Marketcity",
        city: 5,
        merchants: PHOENIX,
    },
    Mall {
        name: "South City Mall",
        city: 6,
        merchants: HIGH_STREET_MALL,
    },
    Mall {
        name: "Lulu Mall",
        city: 7,
        merchants: LULU,
    },
    Mall {
        name: "DLF Mall of India",
        city: 8,
        merchants: PHOENIX,
    },
    Mall {
        name: "Alpha One Mall",
        city: 9,
        merchants: HIGH_STREET_MALL,
    },
];

/// Card merchants outside malls.
pub(super) const STREET: [Merchant; 12] = [
    shop("Swiggy", Mcc::Dining),
    shop("Zomato", Mcc::Dining),
    shop("Cafe Coffee Day", Mcc::Dining),
    shop("BigBasket", Mcc::Grocery),
    shop("DMart", Mcc::Grocery),
    shop("Amazon", Mcc::Shopping),
    shop("Flipkart", Mcc::Shopping),
    shop("Uber", Mcc::Transport),
    shop("Ola", Mcc::Transport),
    shop("Indian Oil", Mcc::Fuel),
    shop("Croma", Mcc::Electronics),
    shop("Tata Power", Mcc::Utilities),
];
