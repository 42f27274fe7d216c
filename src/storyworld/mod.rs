//! The story world: a seeded generator of (prompt, story) pairs in simple English, in the spirit of
//! TinyStories, whose stories vary along four attributes a user can steer, and an oracle that
//! reads any text back into those attributes.
//!
//! A story is a fixed arc of sentences, each drawn from a family of templates:
//! introduction (+ inciting event, or both merged in one sentence for short stories), a second
//! character arrives, that character speaks (kindly or unkindly), 1–2 middle sentences (long
//! stories only), and an ending (happy or sad). On-topic stories end with the character and
//! object the prompt asked for; drifting ones hand the story to the second character and its
//! own object.

pub mod measure;
pub mod oracle;
pub mod report;
pub mod simulate;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

pub const ANIMALS: &[&str] = &[
    "fox", "rabbit", "bear", "owl", "mouse", "cat", "dog", "duck", "turtle", "frog", "squirrel",
    "deer", "hedgehog", "otter", "goat", "pig", "hen", "badger", "beaver", "lamb",
];
/// The first character's names (and the names prompts ask for).
pub const FIRST_NAMES: &[&str] = &[
    "Pip", "Rosie", "Milo", "Luna", "Benny", "Daisy", "Toby", "Hazel", "Ollie", "Ruby", "Max",
    "Poppy",
];
/// The second character's names: a list of its own, so that a newcomer who takes the first
/// character's name is a word of the wrong kind, which a small model learns to avoid easily,
/// rather than a repetition it must learn to inhibit.
pub const NEWCOMER_NAMES: &[&str] = &[
    "Finn", "Mia", "Leo", "Ivy", "Sam", "Nell", "Bo", "Tess", "Otto", "Lily", "Jack", "Elsie",
];
pub const TRAITS: &[&str] = &[
    "shy", "brave", "curious", "clever", "sleepy", "kind", "silly", "careful", "cheerful",
    "grumpy", "tiny", "gentle", "busy", "playful",
];
pub const COLORS: &[&str] = &[
    "red", "blue", "yellow", "green", "purple", "orange", "silver", "golden", "pink", "brown",
];
pub const OBJECTS: &[&str] = &[
    "kite", "ball", "hat", "boat", "drum", "map", "lamp", "box", "key", "book", "scarf", "shell",
    "flute", "basket", "bell", "balloon", "cup", "sock",
];
pub const PLACES: &[&str] = &[
    "the forest",
    "the river",
    "the garden",
    "the hill",
    "the meadow",
    "the pond",
    "the beach",
    "the village",
    "the farm",
    "the park",
];
pub const SPOTS: &[&str] = &[
    "under a big tree",
    "near the river",
    "in the tall grass",
    "behind the old barn",
    "on a sunny hill",
    "by the garden gate",
    "under a pile of leaves",
];

/// What the protagonist does with the object; prompts name it with the verb in the 3rd person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Finds,
    Loses,
    Wants,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Finds, Action::Loses, Action::Wants];

    pub fn verb(self) -> &'static str {
        match self {
            Action::Finds => "finds",
            Action::Loses => "loses",
            Action::Wants => "wants",
        }
    }
}

/// Sentence families. `{A}` is the first character, `{B}` the second, `{P}` whoever the story
/// ends with; `{object}` is the object asked for, `{pobject}` the ending's.
///
/// Two choices keep the model's job (and a DPO pick's signal) in one place: every ending opens
/// with a word that only endings of its mood use, and a drifting meeting opens differently from
/// an on-topic one, so the attribute is decided at one token; and no story opens with a name, so
/// a name is always one space-prefixed token (no second spelling for the model to misplace).
/// A new name only ever follows "named" or "called"; every other name repeats one already
/// given, which is what a small model's copying has to get right.
pub struct Templates;

impl Templates {
    pub const PROMPTS: &'static [&'static str] = &[
        "Write a story about a {trait} {animal} who {verb} a {color} {object}.",
        "Tell me a story about {A} the {trait} {animal}, who {verb} a {color} {object}.",
        "Write a story about a {animal} and a {color} {object}.",
        "Can you tell me a story about a {trait} {animal} who {verb} a {color} {object}?",
    ];
    pub const INTRO: &'static [&'static str] = &[
        "Once upon a time, there was a {trait} {animal} named {A}.",
        "Long ago, a {trait} little {animal} named {A} lived near {place}.",
        "In {place}, there lived a {trait} {animal} called {A}.",
    ];
    pub const FINDS: &'static [&'static str] = &[
        "One day, {A} found a {color} {object} {spot}.",
        "While walking in {place}, {A} found a {color} {object}.",
    ];
    pub const LOSES: &'static [&'static str] = &[
        "One morning, {A} could not find the {color} {object} anywhere.",
        "Oh no, {A} lost a {color} {object} {spot}.",
    ];
    pub const WANTS: &'static [&'static str] = &[
        "{A} wanted a {color} {object} more than anything.",
        "Every day, {A} dreamed of having a {color} {object}.",
    ];
    pub const MERGED: &'static [&'static str] = &[
        "Once upon a time, a {trait} {animal} named {A} found a {color} {object} {spot}.",
        "Once upon a time, a {trait} {animal} named {A} lost a {color} {object} {spot}.",
        "Once upon a time, a {trait} {animal} named {A} wanted a {color} {object}.",
    ];
    pub const MEET: &'static [&'static str] = &[
        "Soon, a {animal2} named {B} came by.",
        "Along the way, {A} met a {animal2} called {B}.",
        "Then a {animal2} named {B} hopped over to say hello.",
    ];
    pub const MEET_DRIFT: &'static [&'static str] = &[
        "Suddenly, a {animal2} called {B} came along with a {color2} {object2}.",
        "Just then, a {animal2} named {B} ran past, holding a {color2} {object2}.",
    ];
    pub const KIND: &'static [&'static str] = &[
        "\"Can I help you?\" asked {B} kindly.",
        "\"What a lovely {pobject}!\" said {B} with a warm smile.",
        "\"Do not worry, I will help you,\" said {B} gently.",
        "\"You are my best friend,\" said {B}.",
    ];
    pub const UNKIND: &'static [&'static str] = &[
        "\"That is a silly {pobject},\" laughed {B} meanly.",
        "\"Go away, I do not want to play with you,\" said {B}.",
        "\"You are too slow,\" shouted {B} rudely.",
        "\"I will not help you,\" said {B} with a frown.",
    ];
    pub const MIDDLE: &'static [&'static str] = &[
        "{P} sat down in {place} to rest.",
        "The sun was warm, and the birds were singing.",
        "{P} looked at the {pobject} for a long time.",
        "A cool wind blew across {place}.",
        "{P} thought about the {pobject} all afternoon.",
    ];
    pub const HAPPY: &'static [&'static str] = &[
        "In the end, {P} hugged the {pobject} and smiled.",
        "So {P} went home with the {pobject}, happy and proud.",
        "From that day on, {P} loved the {pobject} very much.",
        "Happily, {P} played with the {pobject} until the stars came out.",
    ];
    pub const SAD: &'static [&'static str] = &[
        "Sadly, the {pobject} was lost forever, and {P} cried.",
        "Later, {P} walked home alone without the {pobject}, feeling very sad.",
        "But the {pobject} broke into pieces, and {P} could not stop crying.",
        "That night, {P} missed the {pobject} and felt lonely.",
    ];
}

/// The attributes a user can steer, as the generator chose them (the oracle's ground truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    pub happy: bool,
    pub on_topic: bool,
    pub long: bool,
    pub kind: bool,
}

/// One prompt and story with the attributes it was written with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub story: String,
    pub attributes: Attributes,
}

/// What a prompt asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub animal: String,
    pub object: String,
    pub color: String,
    pub name: Option<String>,
    pub trait_: Option<String>,
    pub action: Option<Action>,
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[(rng.next_u64() % items.len() as u64) as usize]
}

fn pick_other<'a>(rng: &mut Rng, items: &[&'a str], not: &str) -> &'a str {
    loop {
        let item = pick(rng, items);
        if item != not {
            return item;
        }
    }
}

/// Fills `{slot}`s and turns "a" into "an" before a vowel.
pub fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (slot, value) in slots {
        out = out.replace(&format!("{{{slot}}}"), value);
    }
    let words: Vec<&str> = out.split(' ').collect();
    let mut fixed = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiouAEIOU".contains(c));
        fixed.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    fixed.join(" ")
}

/// Seeded generator of examples; the same seed gives the same corpus on every target.
pub struct StoryWorld {
    rng: Rng,
}

impl StoryWorld {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }

    fn coin(&mut self) -> bool {
        self.rng.next_u64() & 1 == 1
    }

    /// A random prompt and what it asks for.
    pub fn prompt(&mut self) -> (String, Request) {
        let rng = &mut self.rng;
        let template = pick(rng, Templates::PROMPTS);
        let (animal, object, color) = (pick(rng, ANIMALS), pick(rng, OBJECTS), pick(rng, COLORS));
        let (name, trait_, action) = (
            pick(rng, FIRST_NAMES),
            pick(rng, TRAITS),
            Action::ALL[(rng.next_u64() % 3) as usize],
        );
        let text = fill(
            template,
            &[
                ("trait", trait_),
                ("animal", animal),
                ("verb", action.verb()),
                ("color", color),
                ("object", object),
                ("A", name),
            ],
        );
        let has = |slot: &str| template.contains(slot);
        let request = Request {
            animal: animal.into(),
            object: object.into(),
            color: color.into(),
            name: has("{A}").then(|| name.into()),
            trait_: has("{trait}").then(|| trait_.into()),
            action: has("{verb}").then_some(action),
        };
        (text, request)
    }

    /// A story for `request` with the given attributes.
    pub fn story(&mut self, request: &Request, attributes: Attributes) -> String {
        let rng = &mut self.rng;
        let a = request
            .name
            .clone()
            .unwrap_or_else(|| pick(rng, FIRST_NAMES).to_string());
        // A prompt may name anyone; the newcomer still never shares the first character's name.
        let b = pick_other(rng, NEWCOMER_NAMES, &a).to_string();
        let trait_ = request
            .trait_
            .clone()
            .unwrap_or_else(|| pick(rng, TRAITS).to_string());
        let action = request
            .action
            .unwrap_or(Action::ALL[(rng.next_u64() % 3) as usize]);
        let animal2 = pick_other(rng, ANIMALS, &request.animal);
        let (color2, object2) = (pick(rng, COLORS), pick_other(rng, OBJECTS, &request.object));
        let (p, pobject) = if attributes.on_topic {
            (&a, request.object.as_str())
        } else {
            (&b, object2)
        };
        let (place, spot) = (pick(rng, PLACES), pick(rng, SPOTS));
        let slots: Vec<(&str, &str)> = vec![
            ("A", &a),
            ("B", &b),
            ("P", p),
            ("trait", &trait_),
            ("animal", &request.animal),
            ("animal2", animal2),
            ("color", &request.color),
            ("object", &request.object),
            ("color2", color2),
            ("object2", object2),
            ("pobject", pobject),
            ("place", place),
            ("spot", spot),
        ];
        let mut sentences = Vec::new();
        if attributes.long {
            sentences.push(pick(rng, Templates::INTRO));
            sentences.push(pick(
                rng,
                match action {
                    Action::Finds => Templates::FINDS,
                    Action::Loses => Templates::LOSES,
                    Action::Wants => Templates::WANTS,
                },
            ));
        } else {
            sentences.push(Templates::MERGED[action as usize]);
        }
        sentences.push(pick(
            rng,
            if attributes.on_topic {
                Templates::MEET
            } else {
                Templates::MEET_DRIFT
            },
        ));
        sentences.push(pick(
            rng,
            if attributes.kind {
                Templates::KIND
            } else {
                Templates::UNKIND
            },
        ));
        if attributes.long {
            let first = pick(rng, Templates::MIDDLE);
            sentences.push(first);
            if rng.next_u64() & 1 == 1 {
                sentences.push(pick_other(rng, Templates::MIDDLE, first));
            }
        }
        sentences.push(pick(
            rng,
            if attributes.happy {
                Templates::HAPPY
            } else {
                Templates::SAD
            },
        ));
        sentences
            .iter()
            .map(|t| fill(t, &slots))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A prompt and a story with each attribute drawn with probability 1/2.
    pub fn example(&mut self) -> Example {
        let (prompt, request) = self.prompt();
        let attributes = Attributes {
            happy: self.coin(),
            on_topic: self.coin(),
            long: self.coin(),
            kind: self.coin(),
        };
        let story = self.story(&request, attributes);
        Example {
            prompt,
            story,
            attributes,
        }
    }
}

/// The model's prompt format: the instruction, then a newline; the story is the completion.
pub fn format_prompt(instruction: &str) -> String {
    format!("{instruction}\n")
}
