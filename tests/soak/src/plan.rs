//! The soak's plan: which steps, for which user, when, with which inputs; and what each step's
//! outputs must be (the fakes are deterministic).

use serde_json::{json, Value};

/// What a step asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Concepts,
    Text,
    Image,
    Multiview,
    Sketch,
    Refine,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Concepts => "concepts",
            Kind::Text => "text-to-model",
            Kind::Image => "image-to-model",
            Kind::Multiview => "multiview-to-model",
            Kind::Sketch => "sketch-to-model",
            Kind::Refine => "refine-model",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::Concepts => "image-to-image",
            Kind::Text => "text-to-model",
            Kind::Image | Kind::Multiview => "image-to-model",
            Kind::Sketch => "sketch-to-model",
            Kind::Refine => "refine-model",
        }
    }

    /// The step name of the status endpoint.
    pub fn step(self) -> &'static str {
        match self {
            Kind::Concepts => "concepts",
            Kind::Refine => "refine",
            _ => "model",
        }
    }

    /// Whether Tripo runs it.
    pub fn tripo(self) -> bool {
        self != Kind::Concepts
    }

    /// A draft a refine may use.
    pub fn draft(self) -> bool {
        matches!(
            self,
            Kind::Text | Kind::Image | Kind::Multiview | Kind::Sketch
        )
    }

    pub fn table(self) -> &'static str {
        if self == Kind::Concepts {
            "concept_images"
        } else {
            "models"
        }
    }
}

pub const ALL: [Kind; 6] = [
    Kind::Concepts,
    Kind::Text,
    Kind::Image,
    Kind::Multiview,
    Kind::Sketch,
    Kind::Refine,
];

/// Style of concept steps: the worker sends `"<prompt> Style: <style>"` to OpenAI.
pub const STYLE: &str = "soak";

/// One planned step.
#[derive(Clone, Debug)]
pub struct Step {
    pub index: usize,
    pub kind: Kind,
    pub user: usize,
    pub task_id: String,
    pub nonce: String,
    /// Concepts: images asked for (1–4); multiview: views (2–4); otherwise 1.
    pub n: usize,
    pub prompt: String,
    /// Input objects to upload before the run: (name under the user's folder, PNG bytes).
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Seconds after the start of the run when it is first submitted.
    pub at_s: f64,
}

impl Step {
    /// The request body, given the input URLs (in `inputs` order) and, for a refine, the draft's
    /// Tripo id.
    pub fn body(&self, urls: &[String], draft: Option<&str>) -> Value {
        match self.kind {
            Kind::Concepts => json!({"task_id": self.task_id, "input_image_asset_url": urls[0],
                "prompt": self.prompt, "style": STYLE, "n": self.n}),
            Kind::Text => json!({"task_id": self.task_id, "prompt": self.prompt}),
            Kind::Image | Kind::Multiview => {
                json!({"task_id": self.task_id, "input_image_asset_urls": urls})
            }
            Kind::Sketch => json!({"task_id": self.task_id, "input_sketch_asset_url": urls[0]}),
            Kind::Refine => json!({"task_id": self.task_id,
                "tripo_draft_task_id": draft.unwrap_or_default(), "prompt": "more detail"}),
        }
    }

    /// The object names the step must produce under its folder (`concepts/{task}/`,
    /// `models/{task}/`).
    pub fn output_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Concepts => (0..self.n).map(|i| format!("{i}.png")).collect(),
            Kind::Refine => vec!["refined_model.glb".into()],
            _ => vec!["model.glb".into()],
        }
    }

    pub fn folder(&self) -> String {
        match self.kind {
            Kind::Concepts => format!("concepts/{}", self.task_id),
            _ => format!("models/{}", self.task_id),
        }
    }

    /// The exact bytes of concept image `i` (what the OpenAI fake produced for the sent prompt).
    pub fn concept_bytes(&self, i: usize) -> Vec<u8> {
        fake_providers::concept_png(&format!("{} Style: {STYLE}", self.prompt), i as u32)
    }

    /// How many rows the step must have.
    pub fn rows_expected(&self) -> usize {
        if self.kind == Kind::Concepts {
            self.n
        } else {
            1
        }
    }
}

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `steps` mixed steps for `users` users, first submissions spread evenly over `window_s`.
/// Weights: concepts 34 %, text 14 %, image 12 %, multiview 10 %, sketch 10 %, refine 20 %;
/// at least one of each kind when `steps` ≥ 6, and refines never outnumber possible drafts.
pub fn plan(run: &str, steps: usize, users: usize, window_s: f64, seed: u64) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let weights: [(Kind, u64); 6] = [
        (Kind::Concepts, 34),
        (Kind::Text, 14),
        (Kind::Image, 12),
        (Kind::Multiview, 10),
        (Kind::Sketch, 10),
        (Kind::Refine, 20),
    ];
    let mut kinds: Vec<Kind> = Vec::with_capacity(steps);
    for i in 0..steps {
        let kind = if steps >= 6 && i < 6 {
            // Every kind at least once; the refine after its drafts.
            [
                Kind::Text,
                Kind::Concepts,
                Kind::Image,
                Kind::Multiview,
                Kind::Sketch,
                Kind::Refine,
            ][i]
        } else {
            let mut r = rng.below(100);
            let mut pick = Kind::Concepts;
            for (k, w) in weights {
                if r < w {
                    pick = k;
                    break;
                }
                r -= w;
            }
            pick
        };
        let drafts = kinds.iter().filter(|k| k.draft()).count();
        let refines = kinds.iter().filter(|k| **k == Kind::Refine).count();
        let kind = if kind == Kind::Refine && refines + 1 > drafts / 2 {
            Kind::Text
        } else {
            kind
        };
        kinds.push(kind);
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(index, kind)| {
            let nonce = format!("s{:03}{:06x}", index, rng.below(1 << 24));
            let task_id = format!("{run}-{index:03}-{}", kind.step());
            let n = match kind {
                Kind::Concepts => 1 + rng.below(4) as usize,
                Kind::Multiview => 2 + rng.below(3) as usize,
                _ => 1,
            };
            let directive = format!("[[fake:nonce={nonce}]]");
            let prompt = match kind {
                Kind::Concepts => format!("a soak chair {directive}"),
                _ => format!("a soak lamp {directive}"),
            };
            let slots = match kind {
                Kind::Concepts | Kind::Image | Kind::Sketch => 1,
                Kind::Multiview => n,
                _ => 0,
            };
            let inputs = (0..slots)
                .map(|s| {
                    (
                        format!("{run}/{task_id}-{s}.png"),
                        fake_providers::png_with_text(8, 8, [200, 40, 40], "Comment", &directive),
                    )
                })
                .collect();
            Step {
                index,
                kind,
                user: index % users.max(1),
                task_id,
                nonce,
                n,
                prompt,
                inputs,
                at_s: window_s * index as f64 / steps.max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_mixes_every_kind_and_is_reproducible() {
        let a = plan("r", 200, 3, 100.0, 7);
        let b = plan("r", 200, 3, 100.0, 7);
        assert_eq!(a.len(), 200);
        for k in ALL {
            let n = a.iter().filter(|s| s.kind == k).count();
            assert!(n >= 10, "{}: {n}", k.name());
        }
        let drafts = a.iter().filter(|s| s.kind.draft()).count();
        let refines = a.iter().filter(|s| s.kind == Kind::Refine).count();
        assert!(refines * 2 <= drafts);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.task_id == y.task_id && x.n == y.n));
        assert!(a
            .iter()
            .filter(|s| s.kind == Kind::Concepts)
            .all(|s| (1..=4).contains(&s.n)));
        let short = plan("r", 20, 2, 10.0, 1);
        for k in ALL {
            assert!(short.iter().any(|s| s.kind == k), "{}", k.name());
        }
    }
}
