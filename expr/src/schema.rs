//! What an expression may refer to: the roots allowed where it is written and the
//! features of the FeatureSet it is checked against; and the types the checker
//! reasons with.

use std::collections::BTreeMap;
use std::fmt;

/// The static type of an expression. `Any` is what the checker cannot know (event,
/// profile and prefs attributes are open) and is compatible with every type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Any,
    Bool,
    Number,
    String,
    Time,
    Duration,
    List,
    Map,
}

impl Type {
    /// Every concrete type, for reasoning about what an `Any` might turn out to be.
    pub(crate) const CONCRETE: [Type; 7] = [
        Type::Bool,
        Type::Number,
        Type::String,
        Type::Time,
        Type::Duration,
        Type::List,
        Type::Map,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Type::Any => "any",
            Type::Bool => "bool",
            Type::Number => "number",
            Type::String => "string",
            Type::Time => "time",
            Type::Duration => "duration",
            Type::List => "list",
            Type::Map => "map",
        }
    }

    /// Whether a value of type `self` may be used where `want` is expected.
    pub fn fits(self, want: Type) -> bool {
        self == Type::Any || want == Type::Any || self == want
    }

    /// The possible concrete types of a value of this static type.
    pub(crate) fn candidates(self) -> &'static [Type] {
        match self {
            Type::Any => &Self::CONCRETE,
            Type::Bool => &[Type::Bool],
            Type::Number => &[Type::Number],
            Type::String => &[Type::String],
            Type::Time => &[Type::Time],
            Type::Duration => &[Type::Duration],
            Type::List => &[Type::List],
            Type::Map => &[Type::Map],
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A path root: `event.*`, `features.*`, `profile.*`, `prefs.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Root {
    Event,
    Features,
    Profile,
    Prefs,
}

impl Root {
    pub const ALL: [Root; 4] = [Root::Event, Root::Features, Root::Profile, Root::Prefs];

    pub fn name(self) -> &'static str {
        match self {
            Root::Event => "event",
            Root::Features => "features",
            Root::Profile => "profile",
            Root::Prefs => "prefs",
        }
    }

    pub fn from_name(name: &str) -> Option<Root> {
        Root::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A declared feature: its value type (of each member, for a family), whether it is
/// a keyed family (`by`), and the slot its scope reads it from, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureDecl {
    pub ty: Type,
    pub family: bool,
    /// Where the scope holds the feature: compiled programs carry it, so a scope that
    /// stores features in slots answers without looking the name up.
    pub slot: Option<u32>,
}

/// What expressions checked against this schema may refer to.
///
/// ```
/// use persona_expr::{Root, Schema, Type};
/// let offers = Schema::new()
///     .allow_root(Root::Event)
///     .allow_root(Root::Features)
///     .allow_root(Root::Profile)
///     .allow_root(Root::Prefs)
///     .feature("min_balance_90d", Type::Number, false)
///     .feature("spend_30d", Type::Number, true);
/// assert!(persona_expr::compile("features.spend_30d[\"fuel\"] > 100", &offers).is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    roots: [bool; 4],
    features: BTreeMap<String, FeatureDecl>,
    /// Undeclared features are allowed (of any type, indexable): checking offers
    /// without their FeatureSet.
    open: bool,
}

impl Schema {
    /// A schema that allows no root: only literals and functions of them.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn allow_root(mut self, root: Root) -> Self {
        self.roots[root as usize] = true;
        self
    }

    /// Takes a root away (a scheduled offer has no triggering `event`).
    pub fn forbid_root(mut self, root: Root) -> Self {
        self.roots[root as usize] = false;
        self
    }

    /// Declares a feature. For a family (`by`), `ty` is the type of each member.
    pub fn feature(mut self, name: &str, ty: Type, family: bool) -> Self {
        self.features
            .insert(name.to_owned(), FeatureDecl { ty, family, slot: None });
        self
    }

    /// Declares a feature held in `slot` of the scopes the expressions will run in:
    /// the compiled program reads it by that number ([`crate::FeatureRef::slot`]).
    pub fn feature_in_slot(mut self, name: &str, ty: Type, family: bool, slot: u32) -> Self {
        let slot = Some(slot);
        self.features.insert(name.to_owned(), FeatureDecl { ty, family, slot });
        self
    }

    /// Accepts features it does not declare, as `Any` (and indexable): for checking
    /// expressions when the FeatureSet is not at hand. Declared ones are still checked.
    pub fn open_features(mut self) -> Self {
        self.open = true;
        self
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub fn allows(&self, root: Root) -> bool {
        self.roots[root as usize]
    }

    pub fn lookup(&self, name: &str) -> Option<FeatureDecl> {
        self.features.get(name).copied()
    }

    pub fn feature_names(&self) -> impl Iterator<Item = &str> {
        self.features.keys().map(String::as_str)
    }

    pub(crate) fn allowed_roots(&self) -> Vec<Root> {
        Root::ALL.into_iter().filter(|r| self.allows(*r)).collect()
    }
}
