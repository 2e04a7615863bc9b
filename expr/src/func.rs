//! The built-in functions: names and signatures, shared by the checker (which types
//! calls) and the evaluator (which runs them). There are no user-defined functions.

use crate::schema::Type;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    DayOfMonth,
    Hour,
    DaysSince,
    Responded,
    Sent,
    Coalesce,
    Min,
    Max,
    Abs,
    Contains,
    StartsWith,
    Len,
}

/// One parameter: the types it accepts, and whether it must be a string literal
/// (offer names and outcomes are fixed in the text so they can be checked and read).
#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub accepts: &'static [Type],
    pub literal: bool,
}

const fn p(name: &'static str, accepts: &'static [Type]) -> Param {
    Param {
        name,
        accepts,
        literal: false,
    }
}

const fn lit(name: &'static str) -> Param {
    Param {
        name,
        accepts: &[Type::String],
        literal: true,
    }
}

const TIME: &[Type] = &[Type::Time, Type::String];
const DURATION: &[Type] = &[Type::Duration];
const ANY: &[Type] = &[Type::Any];

/// The outcomes an `offer_response` event carries (DESIGN.md §2).
pub(crate) const OUTCOMES: [&str; 4] = ["delivered", "opened", "positive", "negative"];

impl Func {
    pub(crate) const ALL: [Func; 12] = [
        Func::DayOfMonth,
        Func::Hour,
        Func::DaysSince,
        Func::Responded,
        Func::Sent,
        Func::Coalesce,
        Func::Min,
        Func::Max,
        Func::Abs,
        Func::Contains,
        Func::StartsWith,
        Func::Len,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::DayOfMonth => "day_of_month",
            Func::Hour => "hour",
            Func::DaysSince => "days_since",
            Func::Responded => "responded",
            Func::Sent => "sent",
            Func::Coalesce => "coalesce",
            Func::Min => "min",
            Func::Max => "max",
            Func::Abs => "abs",
            Func::Contains => "contains",
            Func::StartsWith => "starts_with",
            Func::Len => "len",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The parameters; for a variadic function, the one parameter that repeats.
    pub(crate) fn params(self) -> &'static [Param] {
        // Constant items, since calls to `const fn` are not promoted to statics.
        const TIME_ARG: &[Param] = &[p("t", TIME)];
        const RESPONDED: &[Param] = &[lit("offer"), lit("outcome"), p("within", DURATION)];
        const SENT: &[Param] = &[lit("offer"), p("within", DURATION)];
        const COALESCE: &[Param] = &[p("x", ANY)];
        const EXTREME: &[Param] = &[p("x", &[Type::Number, Type::List])];
        const ABS: &[Param] = &[p("x", &[Type::Number, Type::Duration])];
        const CONTAINS: &[Param] = &[p("haystack", &[Type::List, Type::String, Type::Map]), p("needle", ANY)];
        const STARTS_WITH: &[Param] = &[p("s", &[Type::String]), p("prefix", &[Type::String])];
        const LEN: &[Param] = &[p("x", &[Type::List, Type::String, Type::Map])];
        match self {
            Func::DayOfMonth | Func::Hour | Func::DaysSince => TIME_ARG,
            Func::Responded => RESPONDED,
            Func::Sent => SENT,
            Func::Coalesce => COALESCE,
            Func::Min | Func::Max => EXTREME,
            Func::Abs => ABS,
            Func::Contains => CONTAINS,
            Func::StartsWith => STARTS_WITH,
            Func::Len => LEN,
        }
    }

    /// Variadic functions take one or more arguments of their single parameter.
    pub(crate) fn variadic(self) -> bool {
        matches!(self, Func::Coalesce | Func::Min | Func::Max)
    }

    /// The result type; `coalesce` and `abs` refine it from their arguments.
    pub(crate) fn ret(self) -> Type {
        match self {
            Func::DayOfMonth | Func::Hour | Func::DaysSince | Func::Min | Func::Max | Func::Len => Type::Number,
            Func::Responded | Func::Sent | Func::Contains | Func::StartsWith => Type::Bool,
            Func::Coalesce | Func::Abs => Type::Any,
        }
    }

    /// The signature as users read it in docs and help text.
    pub(crate) fn signature(self) -> String {
        let params: Vec<&str> = self.params().iter().map(|p| p.name).collect();
        let list = if self.variadic() {
            format!("{0}, {0}, ...", params[0])
        } else {
            params.join(", ")
        };
        format!("{}({list})", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_signatures_read_well() {
        for f in Func::ALL {
            assert_eq!(Func::from_name(f.name()), Some(f));
        }
        assert_eq!(Func::Responded.signature(), "responded(offer, outcome, within)");
        assert_eq!(Func::Coalesce.signature(), "coalesce(x, x, ...)");
    }
}
