//! Reads any text (corpus stories and model samples alike) back into the story world's
//! attributes, by parsing it sentence by sentence against the generator's templates. This is the
//! ground truth for simulated users, benchmarks and tests.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{
    ANIMALS, COLORS, FIRST_NAMES, NEWCOMER_NAMES, OBJECTS, PLACES, SPOTS, TRAITS, Templates,
};
use super::{Action, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Intro,
    Inciting,
    Merged,
    Meet,
    Dialogue { kind: bool },
    Middle,
    Ending { happy: bool },
}

struct Pattern {
    regex: Regex,
    slots: Vec<String>,
}

impl Pattern {
    /// `^template` with each `{slot}` a capture of its word list and "a" before a slot also
    /// matching "an".
    fn new(template: &str) -> Self {
        let slot_re = Regex::new(r"\{([A-Za-z0-9]+)\}").unwrap();
        let mut pattern = String::from("^");
        let mut slots = Vec::new();
        let mut last = 0;
        for cap in slot_re.captures_iter(template) {
            let whole = cap.get(0).unwrap();
            let mut literal = regex::escape(&template[last..whole.start()]);
            if literal == "a " || literal.ends_with(" a ") {
                literal.truncate(literal.len() - 2);
                literal.push_str("an? ");
            }
            pattern.push_str(&literal);
            let name = &cap[1];
            let words: Vec<&str> = match name {
                // Any name in any name slot: consistency is checked across sentences, not lists.
                "A" | "B" | "P" => [FIRST_NAMES, NEWCOMER_NAMES].concat(),
                "trait" => TRAITS.to_vec(),
                "animal" | "animal2" => ANIMALS.to_vec(),
                "color" | "color2" => COLORS.to_vec(),
                "object" | "object2" | "pobject" => OBJECTS.to_vec(),
                "place" => PLACES.to_vec(),
                "spot" => SPOTS.to_vec(),
                "verb" => Action::ALL.iter().map(|a| a.verb()).collect(),
                other => panic!("template slot {other} has no word list"),
            };
            pattern.push_str(&format!(
                "({})",
                words
                    .iter()
                    .map(|w| regex::escape(w))
                    .collect::<Vec<_>>()
                    .join("|")
            ));
            slots.push(name.to_string());
            last = whole.end();
        }
        pattern.push_str(&regex::escape(&template[last..]));
        // A sentence ends at the end of the text or before whitespace.
        pattern.push_str(r"(?:\s+|$)");
        Self {
            regex: Regex::new(&pattern).unwrap(),
            slots,
        }
    }

    /// Length of the match at the start of `text` and the slot values.
    fn parse(&self, text: &str) -> Option<(usize, Vec<(String, String)>)> {
        let caps = self.regex.captures(text)?;
        let values = self
            .slots
            .iter()
            .zip(caps.iter().skip(1))
            .map(|(s, m)| (s.clone(), m.unwrap().as_str().to_string()))
            .collect();
        Some((caps.get(0).unwrap().end(), values))
    }
}

/// Why a story is not well-formed: the first rule of the arc it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No story-world sentence starts at this text (its first 60 characters).
    Unreadable(String),
    NoIntroduction,
    OutOfOrder,
    TooManyMiddles,
    FirstCharacterRenamed,
    SecondCharacterNotNew,
    StrangerSpeaks,
    StrangerEnds,
    FollowsSomeoneElse,
    ObjectChanges,
}

impl Problem {
    /// The rule broken, without the text that broke it: what `webdpo judge` counts.
    pub fn rule(&self) -> &'static str {
        match self {
            Problem::Unreadable(_) => "unreadable sentence",
            Problem::NoIntroduction => "does not open with an introduction",
            Problem::OutOfOrder => {
                "sentences are not in the order introduction, meeting, dialogue, middle, ending"
            }
            Problem::TooManyMiddles => "more than two middle sentences",
            Problem::FirstCharacterRenamed => "the first character changes name",
            Problem::SecondCharacterNotNew => "the second character is not a new character",
            Problem::StrangerSpeaks => "someone who never arrived speaks",
            Problem::StrangerEnds => "the story ends with a character who was never introduced",
            Problem::FollowsSomeoneElse => "the story changes whom it follows mid-story",
            Problem::ObjectChanges => "the object changes mid-story",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable(text) => write!(f, "{}: {text:?}", self.rule()),
            _ => f.write_str(self.rule()),
        }
    }
}

/// What the oracle reads in a story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// Every sentence is a story-world sentence, in the story arc's order, with consistent names.
    pub well_formed: bool,
    /// Why the story is not well-formed.
    pub problem: Option<Problem>,
    pub sentences: usize,
    /// The ending's mood; `None` without an ending.
    pub happy: Option<bool>,
    /// The second character's words; `None` without dialogue.
    pub kind: Option<bool>,
    /// Six sentences or more.
    pub long: bool,
    /// The story ends with the character and object the prompt asked for; `None` when the prompt
    /// is not a story-world prompt or the story has no ending.
    pub on_topic: Option<bool>,
}

pub struct Oracle {
    sentences: Vec<(Family, Pattern)>,
    prompts: Vec<Pattern>,
}

impl Default for Oracle {
    fn default() -> Self {
        Self::new()
    }
}

struct Parsed {
    family: Family,
    slots: Vec<(String, String)>,
}

impl Parsed {
    fn get(&self, slot: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|(s, _)| s == slot)
            .map(|(_, v)| v.as_str())
    }
}

impl Oracle {
    pub fn new() -> Self {
        let mut sentences = Vec::new();
        let mut add = |family: Family, templates: &[&str]| {
            sentences.extend(templates.iter().map(|t| (family, Pattern::new(t))))
        };
        add(Family::Intro, Templates::INTRO);
        add(Family::Inciting, Templates::FINDS);
        add(Family::Inciting, Templates::LOSES);
        add(Family::Inciting, Templates::WANTS);
        add(Family::Merged, Templates::MERGED);
        add(Family::Meet, Templates::MEET);
        add(Family::Meet, Templates::MEET_DRIFT);
        add(Family::Dialogue { kind: true }, Templates::KIND);
        add(Family::Dialogue { kind: false }, Templates::UNKIND);
        add(Family::Middle, Templates::MIDDLE);
        add(Family::Ending { happy: true }, Templates::HAPPY);
        add(Family::Ending { happy: false }, Templates::SAD);
        Self {
            sentences,
            prompts: Templates::PROMPTS.iter().map(|t| Pattern::new(t)).collect(),
        }
    }

    /// What a story-world prompt asks for; `None` for any other text.
    pub fn parse_prompt(&self, prompt: &str) -> Option<Request> {
        let prompt = prompt.trim();
        self.prompts.iter().find_map(|p| {
            let (end, slots) = p.parse(prompt)?;
            (end == prompt.len()).then_some(())?;
            let get = |s: &str| slots.iter().find(|(k, _)| k == s).map(|(_, v)| v.clone());
            Some(Request {
                animal: get("animal")?,
                object: get("object")?,
                color: get("color")?,
                name: get("A"),
                trait_: get("trait"),
                action: get("verb").and_then(|v| Action::ALL.into_iter().find(|a| a.verb() == v)),
            })
        })
    }

    /// Judges `story` as a response to `prompt`.
    pub fn judge(&self, prompt: &str, story: &str) -> Judgement {
        let mut parsed = Vec::new();
        let mut rest = story.trim_start();
        let mut problem = None;
        while !rest.is_empty() {
            let best = self
                .sentences
                .iter()
                .filter_map(|(family, p)| {
                    p.parse(rest).map(|(len, slots)| {
                        (
                            len,
                            Parsed {
                                family: *family,
                                slots,
                            },
                        )
                    })
                })
                .max_by_key(|(len, _)| *len);
            match best {
                Some((len, p)) => {
                    parsed.push(p);
                    rest = &rest[len..];
                }
                None => {
                    problem = Some(Problem::Unreadable(rest.chars().take(60).collect()));
                    break;
                }
            }
        }
        let ending = parsed
            .iter()
            .rev()
            .find(|p| matches!(p.family, Family::Ending { .. }));
        let happy = ending.map(|p| p.family == Family::Ending { happy: true });
        let kind = parsed.iter().find_map(|p| match p.family {
            Family::Dialogue { kind } => Some(kind),
            _ => None,
        });
        let problem = problem.or_else(|| structure_problem(&parsed));
        let on_topic = match (self.parse_prompt(prompt), ending) {
            (Some(request), Some(ending)) => Some(is_on_topic(&request, &parsed, ending)),
            _ => None,
        };
        Judgement {
            well_formed: problem.is_none(),
            problem,
            sentences: parsed.len(),
            happy,
            kind,
            long: parsed.len() >= 6,
            on_topic,
        }
    }
}

/// The arc: (Intro, Inciting | Merged), Meet, Dialogue, up to two Middle, Ending; names consistent.
fn structure_problem(parsed: &[Parsed]) -> Option<Problem> {
    let families: Vec<Family> = parsed.iter().map(|p| p.family).collect();
    let opening = match families.as_slice() {
        [Family::Intro, Family::Inciting, ..] => 2,
        [Family::Merged, ..] => 1,
        _ => return Some(Problem::NoIntroduction),
    };
    let rest = &families[opening..];
    let middles = rest.len().saturating_sub(3);
    let arc_ok = rest.len() >= 3
        && rest[0] == Family::Meet
        && matches!(rest[1], Family::Dialogue { .. })
        && rest[2..2 + middles].iter().all(|f| *f == Family::Middle)
        && matches!(rest[rest.len() - 1], Family::Ending { .. });
    if !arc_ok {
        return Some(Problem::OutOfOrder);
    }
    if middles > 2 {
        return Some(Problem::TooManyMiddles);
    }
    let a = parsed[0].get("A").unwrap();
    if parsed.iter().any(|s| s.get("A").is_some_and(|x| x != a)) {
        return Some(Problem::FirstCharacterRenamed);
    }
    let b = parsed[opening].get("B").unwrap();
    if b == a {
        return Some(Problem::SecondCharacterNotNew);
    }
    if parsed.iter().any(|s| s.get("B").is_some_and(|x| x != b)) {
        return Some(Problem::StrangerSpeaks);
    }
    let tail = &parsed[opening + 2..];
    let p = tail.last().unwrap().get("P").unwrap();
    if p != a && p != b {
        return Some(Problem::StrangerEnds);
    }
    if tail.iter().any(|s| s.get("P").is_some_and(|x| x != p)) {
        return Some(Problem::FollowsSomeoneElse);
    }
    let pobjects: Vec<&str> = parsed.iter().filter_map(|s| s.get("pobject")).collect();
    if pobjects.windows(2).any(|w| w[0] != w[1]) {
        return Some(Problem::ObjectChanges);
    }
    None
}

fn is_on_topic(request: &Request, parsed: &[Parsed], ending: &Parsed) -> bool {
    let first = parsed.first();
    let a = first.and_then(|p| p.get("A"));
    let animal_ok = first.and_then(|p| p.get("animal")) == Some(request.animal.as_str());
    let name_ok = request.name.as_deref().is_none_or(|n| Some(n) == a);
    let object_ok = parsed
        .iter()
        .filter(|p| matches!(p.family, Family::Inciting | Family::Merged))
        .all(|p| p.get("object") == Some(request.object.as_str()));
    animal_ok
        && name_ok
        && object_ok
        && ending.get("P") == a
        && ending.get("pobject") == Some(request.object.as_str())
}
