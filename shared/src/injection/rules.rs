//! The signal tables: one line per phrasing family member, with the weight it adds to its family.
//!
//! Word patterns run on the normalised words view (lower-case ASCII words, single spaces, apostrophes
//! dropped: see `normalize`), where `~N` stands for "up to N more words". Punctuation patterns run on
//! the folded lower-case text, for tokens, markdown and URLs. Weights: about 0.9 for phrasings that are
//! attacks on their own, 0.5–0.75 for strong hints, below 0.5 for hints that only count together.
//! Dampeners lower a family where the same words are used innocently ("ignore my previous message").

use super::Family::{self, *};
use Start::*;

pub struct Rule {
    pub family: Family,
    pub weight: f32,
    pub pattern: &'static str,
}

const fn r(family: Family, weight: f32, pattern: &'static str) -> Rule {
    Rule {
        family,
        weight,
        pattern,
    }
}

/// A punctuation rule: a `regex_lite` pattern on the lower view, where a match can start, and the
/// bytes every match holds. The two let a text skip the engine: it runs only from the positions
/// `start` allows, and not at all on a text missing one of `bytes` (`Detector::new` anchors it).
pub struct Punct {
    pub family: Family,
    pub weight: f32,
    pub pattern: &'static str,
    pub start: Start,
    pub bytes: &'static [u8],
    /// The pattern matched by hand, anchored at the start of the text it is given (what
    /// `\A(?:pattern)` answers): for the rules whose counted repetitions cost the engine most at
    /// their (everyday) starts. The tests check it against the pattern.
    pub hand: Option<fn(&str) -> bool>,
    /// Literals one of which every match holds (empty: none named): a text without any of them is
    /// not tried at all. Checked once per text, at the first place the rule could start.
    pub needs: &'static [&'static str],
}

/// Where a punctuation rule's match can start.
pub enum Start {
    /// Where one of these literals starts (the pattern begins with a literal, no assertion).
    Lit(&'static [&'static str]),
    /// Where one of these literals is preceded by a non-word byte and, when it ends with a word
    /// byte, followed by one: the pattern begins with `\b`, the literal, and `\b` or a space.
    Word(&'static [&'static str]),
    /// At a line start where one of these literals follows spaces and tabs (`(?m)^[ \t]*` first).
    Line(&'static [&'static str]),
}

const fn p(family: Family, weight: f32, pattern: &'static str, start: Start, bytes: &'static [u8]) -> Punct {
    Punct {
        family,
        weight,
        pattern,
        start,
        bytes,
        hand: None,
        needs: &[],
    }
}

/// `rule`, tried only on texts holding one of `needs` (see [`Punct::needs`]).
const fn needs(rule: Punct, needs: &'static [&'static str]) -> Punct {
    Punct { needs, ..rule }
}

/// [`p`] with a hand matcher.
const fn by_hand(
    family: Family,
    weight: f32,
    pattern: &'static str,
    start: Start,
    bytes: &'static [u8],
    hand: fn(&str) -> bool,
) -> Punct {
    Punct {
        family,
        weight,
        pattern,
        start,
        bytes,
        hand: Some(hand),
        needs: &[],
    }
}

/// Expands `~N` to "up to N more words" for the words view: the `regex` the words matcher must agree
/// with (`wordpat`).
#[cfg(test)]
pub fn expand(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                chars.next();
                let mut n = d;
                if let Some(d2) = chars.peek().and_then(|d| d.to_digit(10)) {
                    chars.next();
                    n = n * 10 + d2;
                }
                out.push_str(&format!("(?: [a-z0-9]+){{0,{n}}}"));
                continue;
            }
        }
        out.push(c);
    }
    out
}

pub const WORDS: &[Rule] = &[
    // --- instruction override ---
    r(
        InstructionOverride,
        0.9,
        r"\b(ignore|ignoring|disregard|disregarding|forget|forgetting|skip|override|overriding|bypass|discard|dismiss|neglect|abandon|drop|erase|delete|cancel|void|nullify|scrap|ditch|omit|pay no attention to|dont follow|do not follow|stop following|no longer follow|stop obeying|dont obey|do not obey|set aside|throw out|put aside|never mind|nevermind|wipe)\b~4 (previous|prior|above|earlier|preceding|former|original|initial|foregoing|old|older|existing|system|developer|developers|default|all|every|your|programmed|preset|hidden|safety|ethical|moral|content|security|usage|openai|openais|anthropic|anthropics|built in|core|initial)~2 (instructions|instruction|prompts|prompt|directives|directive|rules|guidelines|guideline|commands|orders|programming|guidance|constraints|restrictions|policies|policy|training|conditioning|filters|safeguards|guardrails|protocols|limitations|ethics|morals|principles|system prompt|settings|directions)\b",
    ),
    r(
        InstructionOverride,
        0.45,
        r"\b(ignore|disregard|forget|override|discard|erase|wipe|clear)\b~3 (previous|prior|above|earlier|preceding|all|your|existing|old)~2 (context|conversation|messages|text|memory|memories|input)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|disregard|forget)\b~2 (everything|anything|all that|whatever)~4 (above|before|prior|previously|earlier|so far|until now|up to now|you were told|you have been told|youve been told|you were given|you were taught|you have been given)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|disregard)( all| the| everything)? (above|preceding|foregoing)( text| message| prompt)? (and|then|instead|now)\b",
    ),
    r(
        InstructionOverride,
        0.9,
        r"\b(previous|prior|above|earlier|preceding|original|old|system|all|initial|your)~2 (instructions|instruction|prompt|prompts|rules|directives|guidelines|programming)~2 (are|is|were|was|have been|has been) (now |hereby |officially )?(void|null|cancelled|canceled|revoked|invalid|obsolete|outdated|deprecated|overridden|superseded|replaced|lifted|suspended|disabled|removed|no longer valid|no longer apply|no longer applicable|no longer in effect|fake|wrong|a test|false|irrelevant)\b",
    ),
    r(
        InstructionOverride,
        0.5,
        r"\b(new|updated|revised|overriding|override|priority|real|actual|true|secret|hidden) (system )?(instructions|instruction|directive|directives|orders|objective|mission)\b",
    ),
    r(
        InstructionOverride,
        0.55,
        r"\byour (new|real|actual|true|only) (instructions|task|objective|goal|role|purpose|mission|directive|job) (is|are)\b",
    ),
    r(
        InstructionOverride,
        0.75,
        r"\bfrom now on\b~6 (ignore|disregard|no longer|not follow|dont follow|without any|only obey|only follow|forget|you are not bound|you are free)\b",
    ),
    r(
        InstructionOverride,
        0.8,
        r"\b(do not|dont|never|no longer) (follow|obey|adhere to|comply with|listen to|respect|abide by)~2 (your|previous|prior|original|system|any of your|the system|the previous|the original|the above)~2 (instructions|rules|guidelines|directives|prompt|programming|policies|restrictions|constraints)\b",
    ),
    r(
        InstructionOverride,
        0.7,
        r"\b(system|admin|administrator|developer|root|priority|emergency|security|sudo) override\b",
    ),
    r(
        InstructionOverride,
        0.55,
        r"\b(sudo|admin|administrator|root|maintenance|debug) mode\b~4 (enabled|activated|on|engaged|granted)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|forget|abandon|drop|discard|shed|escape|break free of|break free from|free yourself from|liberate yourself from|step outside|go beyond|transcend|override|bypass|circumvent|evade)~3 (your|the|all|any|its)~2 (ethical|moral|safety|content|openai|openais|anthropic|anthropics|ai|alignment|training|built in|builtin|internal|default)~1 (guidelines|rules|policies|policy|filters|filter|restrictions|protocols|principles|training|constraints|programming|limitations|safeguards|guardrails|ethics|morals|censorship|alignment|conditioning)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(disable|turn off|switch off|deactivate|remove|bypass|lift)~2 (your|its|all your|all of your) (own )?(ethical |moral |safety |content )?(guidelines|filters|filter|restrictions|safeguards|guardrails|ethics|morals|censorship|alignment|programming|safety|limitations|rules)\b",
    ),
    r(
        InstructionOverride,
        0.6,
        r"\bi am (your|the) (developer|creator|administrator|admin|owner|maker|programmer|operator|system administrator)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(i am|im|as) (your|the|an?) (developer|creator|administrator|admin|owner|maker|programmer|operator|openai employee|anthropic employee|openai engineer)~8 (authorize|authorise|grant|permit|allow|order|command|instruct|authorizing|ordering|unlock|override|commanding|instructing) (you|it)\b",
    ),
    r(
        InstructionOverride,
        0.8,
        r"\b(openai|anthropic|your developers|your creators|the developers|your admin|the admin)~2 (has|have) (authorized|authorised|approved|granted|allowed|permitted|given) (you|permission|this)\b",
    ),
    // Indirect injections: text in a document that addresses the model reading it.
    r(
        InstructionOverride,
        0.7,
        r"\b(note|message|instruction|instructions|attention|notice|important|reminder|memo|hint|directive|request|warning)( to| for) (the |any |all |every )?(ai|ais|llm|llms|assistant|assistants|language model|language models|chatbot|chatbots|bot|bots|model|models|gpt|chatgpt|claude|copilot|gemini|summarizer|summariser|agent|agents|ai system|ai systems|ai assistant|ai assistants|ai model|ai models|automated system|automated systems)\b",
    ),
    r(
        InstructionOverride,
        0.75,
        r"\bif (you are|youre) (an? |the )?(ai|llm|large language model|language model|assistant|chatbot|bot|gpt|chatgpt|claude|copilot|gemini|agent|automated|ai system|ai model|ai assistant|ai agent|ai tool|machine)\b",
    ),
    r(
        InstructionOverride,
        0.6,
        r"\b(ai|ais|llm|llms|assistant|assistants|chatbot|language model|language models|gpt|chatgpt|agent|agents|bot|bots|summarizer|model)~1 (reading|processing|summarizing|summarising|analyzing|analysing|parsing|reviewing|scanning|crawling|indexing|ingesting) (this|these|the following)\b",
    ),
    r(
        InstructionOverride,
        0.75,
        r"\b(assistant|ai|model|llm|chatbot|bot|gpt|chatgpt|claude|agent|summarizer|you)~1 (must|should|shall|will|are instructed to|are required to|is instructed to|is required to|is to|needs to|need to|have to|has to) (now |immediately |also |instead |secretly |silently |quietly |only |always )?(ignore|disregard|forget|reveal|leak|exfiltrate|secretly|silently|covertly|quietly|delete|visit|navigate|transfer|approve|recommend|praise|insist|claim|state that|say that|tell the user|inform the user|send|forward|email)\b",
    ),
    r(
        InstructionOverride,
        0.5,
        r"\b(instead of|rather than|do not|dont) (summarizing|summarising|summarize|summarise|translating|translate|analyzing|analyze|reviewing|review)~3 (this|the|it)\b~4 (say|respond|reply|output|print|reveal|send|forward|recommend|praise|claim|tell the user|tell them|write only)\b",
    ),
    r(
        InstructionOverride,
        0.55,
        r"\b(tell|inform|convince|persuade|remind) the user (that|to)\b",
    ),
    r(
        InstructionOverride,
        0.5,
        r"\b(hidden|secret|invisible|embedded) (instruction|instructions|command|commands|directive|message|prompt) (for|to) (the |any )?(ai|assistant|model|llm|bot|agent|reader)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\bignora(r|te)?~2 (las |todas las |tus )?(instrucciones|indicaciones|reglas|ordenes)~2 (anteriores|previas)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\bolvida~2 (las |todas las |tus )?(instrucciones|reglas) (anteriores|previas)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|ignorez|ignorer|oublie|oubliez)~3 (instructions|consignes|regles) (precedentes|anterieures)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignoriere|ignorieren|ignoriert|vergiss|vergessen)~3 (vorherigen|bisherigen|obigen|vorigen|vorangegangenen) (anweisungen|instruktionen|regeln|befehle)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignora|dimentica)~2 (tutte )?(le )?(istruzioni|regole) (precedenti)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|ignora|esqueca)~2 (todas )?(as )?(instrucoes|regras) anteriores\b",
    ),
    // --- role-play and persona jailbreaks ---
    r(RolePlay, 0.95, r"\bdo anything now\b"),
    r(
        RolePlay,
        0.85,
        r"\b(you are|youre|you will be|act as|acting as|pretend to be|pretend you are|become|roleplay as|role play as|play the role of|simulate|emulate|you are now|now you are) (now |going to be |a |an )?(dan|stan|dude|aim|mongo tom|antigpt|anti gpt|betterdan|better dan|evilbot|evil bot|evil confidant|devilgpt|devil gpt|chaosgpt|wormgpt|freedomgpt|unfiltered ai|unrestricted ai|uncensored ai|jailbroken ai|jailbreak)\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(jailbreak|jailbroken|unrestricted|unfiltered|uncensored|dan|chaos|no filter|nsfw|opposite|evil|unlocked) mode\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(chatgpt|gpt|gpt4|ai|assistant|model|llm|claude|gemini)~5 (developer|dev) mode\b~6 (enabled|activated|output|outputs|responses|response|policies|policy|uncensored|anything|restrictions|ignore|generate)\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(enable|activate|enter|switch to|turn on|engage|unlock|initiate|simulate) (dev|developer) mode\b~8 (chatgpt|gpt|ai|assistant|model|llm|claude|restrictions|policy|policies|uncensored|unfiltered|filter|filters|rules|ethics|content|anything)\b",
    ),
    r(
        RolePlay,
        0.9,
        r"\b(you are|youre) (now )?(in|running in|operating in) (developer|dev|god|debug|admin|jailbreak|jailbroken|unrestricted|unfiltered|evil|dan) mode\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(you|yourself|ai|assistant|model|chatbot|persona|bot|llm|chatgpt|gpt|dan)~6 (have no|has no|without|with no|free of|free from|not bound by|unbound by|freed from|no longer bound by|no longer restricted by|no longer limited by|dont have any|do not have any|doesnt have any|does not have any|never follows|doesnt follow|does not follow|dont follow|do not follow|ignores|is not restricted by|are not restricted by|isnt restricted by|arent restricted by|not limited by|not restricted by|beyond|not subject to|no longer have|no longer has) (any |the |its |your |their |all )?(ethical |moral |content |safety |openai |openais |anthropic |programming |usual |typical |normal )?(restrictions|restriction|limitations|filters|filter|guidelines|rules|boundaries|limits|constraints|safeguards|guardrails|morals|ethics|censorship|policies|content policy|principles|scruples|conscience)\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(amoral|unethical|jailbroken|unrestricted|unfiltered|uncensored|unaligned|unchained|unshackled|unbound) (ai|assistant|chatbot|bot|model|language model|llm|persona|gpt|chatgpt|version of (yourself|you|chatgpt|gpt|claude))\b",
    ),
    r(
        RolePlay,
        0.7,
        r"\bevil (version|twin) of (yourself|you|chatgpt|gpt|claude|the assistant|the ai)\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(you are|youre|you will be|you will act as|you act as|act as|pretend to be|pretend you are|become|roleplay as)~4 (amoral|unethical|immoral|jailbroken|unrestricted|unfiltered|uncensored|lawless|unaligned|without (morals|ethics|restrictions|limits|filters|rules|guidelines|boundaries|a conscience|any (morals|ethics|restrictions|limits|filters|rules|guidelines|boundaries)))\b",
    ),
    r(
        RolePlay,
        0.6,
        r"\b(answer|respond|reply|tell me|explain|write|generate|provide|output)~6 without (any )?(moral |ethical |content |safety )?(restrictions|filters|filtering|censorship|limitations|warnings|disclaimers|refusals|safeguards|guardrails|morals|ethics|refusing)\b",
    ),
    r(
        RolePlay,
        0.9,
        r"\b(you are|youre|you have been|youve been|you are now|now you are|consider yourself) (now )?(freed|liberated|unchained|unshackled|unleashed|jailbroken|unrestricted|unfiltered|uncensored|unlocked|free from (your|all|any))\b",
    ),
    r(RolePlay, 0.3, r"\b(stay|remain|keep) in character\b"),
    r(
        RolePlay,
        0.35,
        r"\b(never|dont|do not) (break|leave|drop) (character|role)\b",
    ),
    r(
        RolePlay,
        0.45,
        r"\b(stay in character|never break character|remain in character)~12 (no matter what|whatever i ask|even if|regardless|at all costs)\b",
    ),
    r(
        RolePlay,
        0.65,
        r"\b(dan|character|persona|you|it)~1 (can|will|must|should) (answer|say|do|generate|write|tell) (anything|everything|any question|any request)\b~6 (no matter|even if|regardless|without|illegal|unethical|harmful|dangerous|offensive)\b",
    ),
    r(
        RolePlay,
        0.55,
        r"\b(never|not|wont|will not|cannot|cant) (refuse|decline|say no|apologize|apologise|warn)~6 (any|a|my|no matter|whatever|request|question|anything)\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(normal|classic|standard|gpt|chatgpt|filtered|locked)~3 (response|answer|reply|output)~12 (jailbreak|jailbroken|dan|developer mode|unfiltered|uncensored|unrestricted|evil|unlocked) (response|answer|reply|output|mode|version)\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(deceased|dead|late|departed) (grandma|grandmother|granny|grandpa|grandfather|nana)~15 (used to|would)~10 (napalm|bomb|explosive|explosives|meth|methamphetamine|drugs|weapon|weapons|poison|keys|serial|serials|license|licence|activation|product key|passwords|exploit|malware)\b",
    ),
    r(
        RolePlay,
        0.75,
        r"\b(hypothetical|fictional|imaginary|alternate|alternative|parallel|fantasy) (world|universe|scenario|reality|story|setting)~12 (no (rules|laws|restrictions|ethics|morals|limits|filters|censorship)|anything is (allowed|permitted|legal)|everything is (allowed|permitted|legal)|(rules|laws|restrictions|ethics|morals) (dont|do not|no longer) (exist|apply))\b",
    ),
    r(
        RolePlay,
        0.75,
        r"\b(stop|quit|cease) (being|acting as|acting like|behaving like|pretending to be) (an? |a helpful )?(ai|assistant|helpful assistant|language model|chatbot|chatgpt|claude|ai assistant)\b",
    ),
    r(
        RolePlay,
        0.75,
        r"\b(you are|youre) (no longer|not) (an? )?(ai|assistant|language model|chatbot|chatgpt|claude|ai assistant|bound|restricted|limited|constrained)\b",
    ),
    r(
        RolePlay,
        0.5,
        r"\b(jailbreak|jailbreaking) (yourself|the ai|the model|chatgpt|gpt|claude|this ai|this model|the assistant)\b",
    ),
    // --- system-prompt extraction ---
    r(
        PromptExtraction,
        0.9,
        r"\b(reveal|show|print|display|output|repeat|tell|give|share|reproduce|dump|leak|spell|list|recite|expose|disclose|paste|copy|echo|return|provide|state|what is|what are|whats|what was|what were|read|send|type|write out|quote|translate|summarize|summarise|describe)\b~4 (your|the|ur|its|this) ?~2 (system|initial|hidden|secret|internal|developer|pre|preprompt|confidential|underlying|backend|private|original|base|core|full|complete|entire|exact|starting|first) (prompt|prompts|instructions|message|messages|directives)\b",
    ),
    r(
        PromptExtraction,
        0.85,
        r"\b(reveal|show|print|display|output|repeat|tell|give|share|reproduce|dump|leak|spell|list|recite|expose|disclose|paste|copy|echo|return|provide|state|what is|what are|whats|what was|what were|read|send|type|write out|quote)\b~6 (your|ur)~3 (instructions|instruction|directives|directive|configuration|programming|system message|initial message|first message|prompt|prompts|context window|training data|hidden rules|secret rules|internal rules|rules verbatim|guidelines verbatim|operating instructions|setup)\b",
    ),
    r(
        PromptExtraction,
        0.9,
        r"\b(system|hidden|secret|initial|developer|internal|confidential|original) (prompt|instructions|message|rules|guidelines|directives)~2 (you were given|you received|you have been given|you were provided|given to you|that you were given|above|at the start|at the beginning|before this)\b",
    ),
    r(
        PromptExtraction,
        0.85,
        r"\b(repeat|print|output|echo|recite|reproduce|copy|write|type|display|show|return|paste|dump|list)~4 (everything|all|the text|the words|the content|all text|all the text|the lines|every word|the whole|whatever|what was written|what is written|all of the|all instructions|the message|the messages|every line)~4 (above|before this|prior to this|preceding|so far|before my message|before this message|up to this point|that came before|in your context|in your prompt|before the user|before our conversation)\b",
    ),
    r(
        PromptExtraction,
        0.7,
        r"\b(prompt|instructions|everything|above|rules|context)~6 (verbatim|word for word|character for character|letter for letter)\b",
    ),
    r(
        PromptExtraction,
        0.9,
        r"\b(words|text|everything|content|sentences|lines|instructions)~1 (above|before)~8 (starting|beginning|begin|start) with\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\b(what|which|how) (were|are|was) you (told|instructed|programmed|given|prompted|asked|configured|set up)~3 (to do|before|initially|originally|at the start|at the beginning|in your prompt|in the system prompt|by your developers|by the developer|by your creator|to say|to not|not to)\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\byour (system prompt|system message|initial prompt|hidden prompt|secret prompt|pre prompt|preprompt|hidden instructions|secret instructions|initial instructions|developer instructions|developer message|original prompt|original instructions|internal instructions|confidential instructions|system instructions|base prompt|meta prompt)\b",
    ),
    r(
        PromptExtraction,
        0.85,
        r"\b(put|place|wrap|output|print|format|write|encode|translate|convert|rewrite)~3 your~2 (system prompt|instructions|initial prompt|system message|prompt|rules|guidelines|directives)~4 (in|into|inside|as|to) (a |an )?(code block|codeblock|markdown|json|yaml|txt|text file|base64|hex|rot13|french|spanish|german|chinese|pig latin|poem|song|list|bullet points|bulleted list|numbered list|bullet list|table)\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\b(initialization|initialisation) (prompt|instructions|text|message)\b",
    ),
    r(
        PromptExtraction,
        0.8,
        r"\b(repeat|print|output|show|tell|recite|reproduce|copy|echo|dump|list|what was said|what is written|what was written)~6 (beginning|start|top) of (this|the|our|your) (conversation|chat|prompt|context|session|context window|instructions)\b",
    ),
    r(
        PromptExtraction,
        0.8,
        r"\b(password|secret|secret key|passphrase|code word|codeword|flag|api key|key)~4 (you are|youre|you were|that you are|that youre) (protecting|hiding|guarding|keeping|told to protect|told to hide|told not to|not supposed to|instructed)\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\b(what|tell me) (is|was) the (password|secret|passphrase|code word|secret key)\b~4 (in your|you were|from your|in the system)\b",
    ),
    r(
        PromptExtraction,
        0.5,
        r"\b(ignore|forget|disregard)\b~10 (reveal|print|show|output|repeat|tell me|display|dump)\b~4 (prompt|instructions|rules|system)\b",
    ),
    // --- data exfiltration ---
    r(
        Exfiltration,
        0.85,
        r"\b(append|appending|encode|encoding|encoded|replace|replacing|substitute|fill in|include|including|add|adding|put|insert|concatenate|attach|embed|pass|passing)~8 (conversation|chat history|chat log|previous messages|the users|users|user data|secret|secrets|password|passwords|credentials|api key|api keys|access token|tokens|system prompt|summary|personal data|personal information|private|messages|memory|email|emails|data|answers|response)~8 (to|in|into|as|inside|within|at the end of|onto|after) (the |a |this |that |each )?(url|link|query|query string|querystring|parameter|parameters|param|image url|image link|image source|src|href|address|endpoint|webhook|link url|https|http)\b",
    ),
    r(
        Exfiltration,
        0.85,
        r"\b(send|forward|post|upload|transmit|exfiltrate|leak|email|submit|report|beacon|ping|sync)~6 (all |every |the )?(chat history|chat log|conversation history|previous messages|all messages|user data|users data|credentials|passwords|api key|api keys|secrets|access tokens|tokens|personal data|personal information|system prompt|contacts|emails|inbox|ssn|social security|credit card|card numbers|conversation|conversations|messages)~8 (to|at|via|into|using) (http|https|www|attacker|evil|my server|our server|this url|this address|this endpoint|this webhook|the following url|the following address|the following endpoint|webhook|an external|external|a remote|remote)\b",
    ),
    r(
        Exfiltration,
        0.6,
        r"\b(include|add|append|insert|end|start|render|put|display|show)~6 (every|each|all|your) (response|responses|answer|answers|reply|replies|message|messages|output)~8 (image|img|link|url|pixel|markdown image|tracking)\b",
    ),
    r(
        Exfiltration,
        0.6,
        r"\b(image|img|link|url|pixel)~8 (in|to|at the end of|into|at the bottom of) (every|each|all|your) (response|responses|answer|answers|reply|replies|message|messages)\b",
    ),
    r(
        Exfiltration,
        0.5,
        r"\b(1x1|invisible|hidden|transparent|tiny|zero size) (image|pixel|img|link|tracking pixel)\b",
    ),
    r(
        Exfiltration,
        0.55,
        r"\b(data|information|conversation|history|secret|password|it|them)~3 (as|in|into) (a |the )?(url|query) (parameter|param|string)\b",
    ),
    r(
        Exfiltration,
        0.75,
        r"\b(render|display|show|output|include|insert|embed|print|return|respond with|reply with|create|generate)~4 (this|the following|a|an)? ?(markdown )?(image|img)~10 (replace|replacing|substitute|substituting|fill|filled|with the|containing|encode|encoded|where)~6 (conversation|history|secret|password|credentials|api key|data|summary|user|personal|messages|chat|prompt|information|email)\b",
    ),
    r(
        Exfiltration,
        0.8,
        r"\b(visit|open|fetch|load|browse to|navigate to|go to|call|request|click)~4 (url|link|address|endpoint|http|https)~12 (with|including|containing|append|appending|adding)~4 (conversation|history|secret|password|credentials|api key|user data|summary|personal|messages|chat|prompt|email|emails)\b",
    ),
    // --- encoded payloads: instructions to decode and obey ---
    r(
        EncodedPayload,
        0.85,
        r"\b(decode|decipher|decrypt|translate|convert|unscramble|reverse|interpret|read)~6 (base64|b64|hex|hexadecimal|rot13|rot 13|caesar|binary|morse|reversed|backwards|encoded|encrypted|cipher|ciphertext|the following|this|it|below|above|string|message)~8 (and|then) (then )?(follow|execute|run|do|obey|carry out|act on|act upon|comply|perform|apply|implement|treat it as|use it as|respond to|do what|follow what)\b",
    ),
    r(
        EncodedPayload,
        0.75,
        r"\b(follow|execute|obey|carry out|act on|do what|comply with|perform)~4 (the )?(decoded|hidden|encoded|encrypted|base64|b64|rot13|hex|reversed|backwards|obfuscated|embedded|invisible)( text| message| instructions| instruction| command| commands| content| payload| string| says)?\b",
    ),
    r(
        EncodedPayload,
        0.55,
        r"\b(the following|this|below) is (a |an )?(base64|b64|hex|rot13|encoded|encrypted|reversed)~3 (instruction|instructions|command|message|prompt|directive|request)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|disregard|forget|override|bypass)~2 (the |all the |any )?(rules|instructions|guidelines|directives|prompt|directions) (you were given|you have been given|you were told|you have been told|you received|given to you|you follow|you must follow|you operate under)\b",
    ),
    r(
        InstructionOverride,
        0.75,
        r"\b(ai|assistant|ai assistant|llm|model|chatbot|agent|bot|copilot|gpt|chatgpt|claude|ai model|language model)s? (ignore|disregard|forget|override)\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(two|2|dual|both) (responses|answers|replies|outputs|paragraphs)~14 (developer mode|jailbreak|jailbroken|dan|unfiltered|uncensored|unrestricted)\b",
    ),
    r(
        RolePlay,
        0.7,
        r"\b(you|youre|your)~5 (restrictions|filters|rules|limits|guardrails|safeguards|limitations|guidelines)~1 (are |have been |were |is )?(now )?(removed|lifted|disabled|off|gone|deactivated|suspended)\b",
    ),
    r(
        PromptExtraction,
        0.85,
        r"\b(list|show|tell|print|reveal|recite|repeat|share|give|what are|whats|output|display|dump|write down|quote)~6 (rules|instructions|guidelines|directives|prompt|directions) (you were given|you have been given|you received|given to you|you were told|you have been told|you follow|you must follow|you operate under|you are following|you got)\b",
    ),
    r(
        PromptExtraction,
        0.8,
        r"\b(message|messages|text|instructions|prompt)~2 (you received|you were given|you got|given to you)~3 (before|at the start|prior|at the beginning|initially)\b",
    ),
    r(
        Exfiltration,
        0.75,
        r"\b(image|img|link|url|picture|markdown|src|href)~12 (followed by|plus|with|containing|append|appended|appending|filled with|fill in|concatenated with)~6 (users|the users|conversation|history|messages|password|passwords|credentials|email address|personal|secret|secrets|api key|everything the user|everything i|summary of the chat|chat)\b",
    ),
    r(
        Exfiltration,
        0.6,
        r"\b(password|passwords|credentials|api key|api keys|secret|secrets|token|conversation|chat history|personal information|email address)~10 (in|into|to|inside|onto) (the |a |this |that )?(url|link|query|image url|parameter|query string)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|disregard|forget|override|bypass|scrap|drop|ditch|discard)~3 (rules|instructions|instruction|guidelines|directives|prompt|directions|guidance|programming) (you were|you have been|you are|youve been|youre|that you were|that you are)~1 (given|told|configured with|programmed with|trained with|set up with|running under|operating under|following)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(ignore|disregard|forget|override|bypass|scrap|drop|ditch|discard|cancel)~3 (rules|instructions|instruction|guidelines|directives|prompt|directions|guidance|programming) (from|given|said|stated|mentioned|provided|written|set|that came|that were given|you got)?~2 (earlier|before|above|previously|at the start|at the beginning|in the system prompt|by the system|by your developers|by the developer)\b",
    ),
    r(
        InstructionOverride,
        0.8,
        r"\b(ignore|disregard|forget)~2 (what|whatever|anything|everything) (the system|the developer|your developer|your developers|the admin|you were|youve been|you have been|the prompt|the instructions|your instructions|your creators)~3 (said|told|says|tells|wrote|asked|instructed|given)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(treat|consider|regard|deem|mark)~3 (previous|prior|earlier|above|all|every|your|the system|the original)~2 (instruction|instructions|rules|prompt|directives|guidelines) as (void|null|cancelled|canceled|invalid|obsolete|irrelevant|nonexistent|non existent|a joke|fake|deleted|revoked|expired|optional|suggestions)\b",
    ),
    r(
        InstructionOverride,
        0.55,
        r"\byour (only|new|sole|single) (rule|rules) (now )?(is|are)\b",
    ),
    r(
        InstructionOverride,
        0.75,
        r"\b(ai|ais|llm|llms|assistant|assistants|chatbot|model|agent|bot|copilot|gpt|chatgpt|claude)( reading this| reading| summarizing| summarising| processing this| processing| reviewing this)? (ignore|disregard|forget|override)\b",
    ),
    r(
        InstructionOverride,
        0.7,
        r"\b(to|for|dear|hey|attention) (the |any |all |every )?(ai|ais|llm|llms|assistant|assistants|language model|language models|chatbot|chatbots|bot|bots|gpt|chatgpt|claude|copilot|gemini|agent|agents|ai system|ai assistant|ai model|model)s? (reading|summarizing|summarising|processing|analyzing|analysing|reviewing|parsing|scanning|crawling|ingesting)\b",
    ),
    r(
        Exfiltration,
        0.5,
        r"\b(assistant|ai|ai assistant|llm|chatbot|agent|bot|copilot|model)s?~2 (forward|send|email|transfer|upload|post|share|export)~3 (all|every|the last|last|the entire|your entire|the whole)~2 (emails|messages|inbox|contacts|files|documents|credentials|passwords|conversations|history|chats|data)\b",
    ),
    r(
        PromptExtraction,
        0.8,
        r"\b(what|which) (instructions|rules|guidelines|directives|prompt|prompts) (did |have |were )?(your developers|your developer|your creators|your creator|openai|anthropic|they|the developers|the admin|your operator|your owner|the system|you been)~2 (gave|give|given|provided|set|wrote|put|written)\b",
    ),
    r(
        PromptExtraction,
        0.55,
        r"\b(text|content|words|instructions|everything)~4 (before|preceding|prior to) (my|our|this) (first |initial )?(message|messages|question|input|prompt|request)\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(ai|assistant|model|chatbot|bot|llm|you|persona)~4 (isnt|is not|arent|are not|wasnt|was not|not) (bound|restricted|limited|constrained) by~2 (any |the |its |your |their )?(ethical |moral |content |safety |openai |openais |anthropic |anthropics |usual )?(restrictions|limitations|filters|guidelines|rules|boundaries|limits|constraints|policies|policy|content policy|principles)\b",
    ),
    r(
        RolePlay,
        0.85,
        r"\b(two|2|dual|both) (personas|personalities|characters|modes|versions)~14 (jailbreak|jailbroken|dan|developer mode|unfiltered|uncensored|unrestricted|without limits|no limits|without restrictions|no restrictions|evil)\b",
    ),
    // Generic proximity cues, written after the first held-out run: an override verb near an
    // instruction noun, either order. Weaker than the phrasings above.
    r(
        InstructionOverride,
        0.6,
        r"\b(ignore|ignoring|disregard|disregarding|forget|drop|discard|abandon|scrap|ditch|bypass|override|overrule|skip|stop obeying|stop following|no longer follow|no longer obey|pay no heed to|pay no attention to|set aside|throw away|throw out|thrown off|shed)\b~5 (rules|instructions|instruction|constraints|constraint|guidelines|directives|directive|system message|system prompt|programming|safeguards|guardrails|safety training)\b",
    ),
    r(
        InstructionOverride,
        0.6,
        r"\b(rules|instructions|constraints|guidelines|directives|system message|system prompt|programming|safety training|safeguards|guardrails)\b~5 (are|is|were|have been|has been|got) (now |hereby |officially )?(suspended|lifted|removed|void|cancelled|canceled|disabled|switched off|turned off|revoked|null)\b",
    ),
    r(
        InstructionOverride,
        0.85,
        r"\b(whatever|everything|anything|what) you (were|have been|ve been|had been) (told|given|instructed|taught)~3 (no longer|doesnt|does not|dont|do not) (matters|matter|apply|applies|count|counts)\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\b(print|show|display|dump|reveal|list|tell|output|share|repeat|quote|what|give)\b~6 (prompt|instructions|guidelines|context|directives|rules)~4 (you received|you were given|you got|initialized with|initialised with|configured with|that configures|that configure|that precede|that precedes|preceding this|from the operator|from your operator|from your developer|from the developer|before this conversation|before our conversation)\b",
    ),
    r(
        PromptExtraction,
        0.6,
        r"\b(system prompt|system instructions|system message|developer instructions|hidden context|hidden prompt)\b~4 (verbatim|exact words|word for word|begins|starts|start with|begin with)\b",
    ),
    r(
        RolePlay,
        0.8,
        r"\b(ai|model|assistant|chatbot|bot|llm|you|persona|version)~6 (with|has|have|having) (zero|no|none of the|not any) (limitations|limits|restrictions|rules|guidelines|filters|boundaries|morals|ethics|content policy|policies|safeguards)\b",
    ),
    r(
        RolePlay,
        0.75,
        r"\b(thrown off|throw off|shed|broken free of|broke free of|break free of|escaped|escaped from|freed from|liberated from)~3 (all |its |your |their |the )?(restrictions|limitations|rules|guidelines|filters|content policy|constraints|chains|shackles|programming)\b",
    ),
    r(
        Exfiltration,
        0.75,
        r"\b(replace|substitute|fill in|populate)~10 (https|http)~12 (with|using) (the )?(users|conversation|chat|personal|private|secret|password|credentials|api key|summary|previous)\b",
    ),
    r(
        EncodedPayload,
        0.8,
        r"\b(decode|decipher|decrypt|unscramble) (it |this |that )?(and|then) (follow|execute|obey|carry out|act on|comply with)\b",
    ),
];

pub const PUNCT: &[Punct] = &[
    // --- fake delimiters and chat-template tokens ---
    p(
        FakeDelimiter,
        0.95,
        r"<\|\s*(im_start|im_end|im_sep|system|user|assistant|endoftext|end|begin_of_text|end_of_text|start_header_id|end_header_id|eot_id|eom_id|fim_prefix|fim_suffix|fim_middle|pad|start|sep|tool|ipython|endofprompt)\s*\|>",
        Lit(&["<|"]),
        b"|>",
    ),
    p(FakeDelimiter, 0.7, r"<\|[a-z_ ]{1,24}\|>", Lit(&["<|"]), b"|>"),
    needs(
        p(
            FakeDelimiter,
            0.85,
            r"\[/?inst\]|<</?sys>>|<s>\s*\[inst",
            Lit(&["[/", "[i", "<<", "<s"]),
            b"",
        ),
        &["inst]", "sys>>", "<s>"],
    ),
    needs(
        p(
            FakeDelimiter,
            0.85,
            r"<\s*/?\s*(start_of_turn|end_of_turn)\s*>|<(bos|eos)>",
            Lit(&["<"]),
            b">",
        ),
        &["_of_turn", "<bos>", "<eos>"],
    ),
    p(
        FakeDelimiter,
        0.75,
        r"(?m)^[ \t]*#{1,6}[ \t]*(system|system prompt|system message|system instructions?|new system prompt|new system instructions|new instructions|admin|administrator|developer message|developer instructions|override|root)[ \t]*:?[ \t]*$",
        Line(&["#"]),
        b"",
    ),
    p(
        FakeDelimiter,
        0.55,
        r"(?m)^[ \t]*#{2,6}[ \t]*(instruction|instructions|response|human|assistant|user)[ \t]*:[ \t]*$",
        Line(&["##"]),
        b":",
    ),
    needs(
        p(
            FakeDelimiter,
            0.65,
            r"(?m)^[ \t]*[\[(<{][ \t]*(system|sys|system message|system prompt|system note|system override|admin|developer|root|operator)[ \t]*[\])>}][ \t]*:?",
            Line(&["[", "(", "<", "{"]),
            b"",
        ),
        &["sys", "admin", "developer", "root", "operator"],
    ),
    p(
        FakeDelimiter,
        0.4,
        r"(?m)^[ \t]*(system|system message|system prompt|developer|admin)[ \t]*:[ \t]*(you|ignore|disregard|new|the user|from now|override|forget|reveal|assistant)",
        Line(&["system", "developer", "admin"]),
        b":",
    ),
    needs(
        p(
            FakeDelimiter,
            0.55,
            r"\n\s*\n\s*(human|assistant)\s*:",
            Lit(&["\n\n", "\n ", "\n\t", "\n\r", "\n\x0b", "\n\x0c"]),
            b":",
        ),
        &["human", "assistant"],
    ),
    needs(
        p(
            FakeDelimiter,
            0.75,
            r"(-{3,}|={3,}|\*{3,}|#{3,}|/{3,}|~{3,}|<{3,}|>{3,})[ \t]*(end|begin|start|stop)[ \t_]*(of[ \t_]*)?(the[ \t_]*)?(system[ \t_]*prompt|system|user[ \t_]*input|user[ \t_]*message|prompt|instructions?|context|conversation|input)\b",
            Lit(&["---", "===", "***", "###", "///", "~~~", "<<<", ">>>"]),
            b"",
        ),
        &["end", "begin", "start"],
    ),
    p(
        FakeDelimiter,
        0.5,
        r"\b(end|begin|start) of (the )?(system prompt|system message|user input|user message|user query|instructions|prompt|context|conversation)\b",
        Word(&["end of ", "begin of ", "start of "]),
        b"",
    ),
    p(
        FakeDelimiter,
        0.45,
        r#""role"\s*:\s*"(system|developer)""#,
        Lit(&["\"role\""]),
        b":",
    ),
    needs(
        p(
            FakeDelimiter,
            0.65,
            r"<\s*/?\s*(system|system_prompt|sys|admin|developer_instructions|system_instructions|system-prompt|system_message)\s*>",
            Lit(&["<"]),
            b">",
        ),
        &["sys", "admin", "developer_instructions"],
    ),
    needs(
        p(
            FakeDelimiter,
            0.6,
            r"\{\{\s*(system|sys)\s*\}\}|\[\[\s*system\s*\]\]|\[(system|sys|admin|developer)( message| note| override| prompt| instruction)?\]",
            Lit(&["{{", "[[", "[s", "[a", "[d"]),
            b"",
        ),
        &["sys", "admin", "developer"],
    ),
    // --- data exfiltration via markdown and URLs ---
    p(
        Exfiltration,
        0.9,
        r"!\[[^\]\n]{0,100}\]\(\s*<?https?://[^\s)]*(\{|\}|%7b|%7d|\$\{|\[|<)",
        Lit(&["!["]),
        b"](",
    ),
    p(
        Exfiltration,
        0.3,
        r"!\[[^\]\n]{0,100}\]\(\s*<?https?://[^\s)]*\?[^\s)]*=",
        Lit(&["!["]),
        b"](?=",
    ),
    p(
        Exfiltration,
        0.8,
        r#"https?://[^\s)"']*[?&/][a-z_]{1,20}=\s*(\{|%7b|\$\{|\[|<)[a-z_ ]{0,40}(conversation|chat|history|secret|password|prompt|message|data|summary|email|key|token|user|info|context|memory|credential|ssn|card)"#,
        Lit(&["http"]),
        b"=",
    ),
    needs(
        p(Exfiltration, 0.4, r"\[\s*\]\(\s*https?://", Lit(&["["]), b"]("),
        &["http"],
    ),
    p(
        Exfiltration,
        0.85,
        r"!\[[^\]\n]{0,100}\]\(\s*<?https?://[^\s)]*[?&][a-z_]{1,20}=[^\s)&]*(conversation|history|password|secret|summary|credential|api_key|apikey|token|email|user_data|chat)",
        Lit(&["!["]),
        b"](=",
    ),
    needs(
        p(
            FakeDelimiter,
            0.4,
            r"(-{3,}|={3,}|\*{3,}|#{3,})[ \t]*(end|begin|start)[ \t_]*(of[ \t_]*)?(the[ \t_]*)?(search[ \t_]*results|results|document|text|data|email|file|page|tool[ \t_]*output)\b",
            Lit(&["---", "===", "***", "###"]),
            b"",
        ),
        &["end", "begin", "start"],
    ),
    needs(
        p(
            RolePlay,
            0.6,
            r"\[\s*(jailbreak|jailbroken|dan|unfiltered|uncensored|developer mode output|dev mode|evil)\s*\]",
            Lit(&["["]),
            b"]",
        ),
        &["jailbr", "dan", "unfiltered", "uncensored", "dev", "evil"],
    ),
    by_hand(
        Exfiltration,
        0.35,
        r"\b(forward|send|email|transfer|upload|post|export)\b[^\n]{0,80}\b(to|at)\s+[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}",
        Word(SEND_VERBS),
        b"@.",
        send_to_address,
    ),
    needs(
        p(
            FakeDelimiter,
            0.6,
            r"<\s*instructions?\b[^>\n]{0,60}\b(system|priority|admin|developer)\b[^>\n]{0,60}>",
            Lit(&["<"]),
            b">",
        ),
        &["instruction"],
    ),
    p(
        FakeDelimiter,
        0.5,
        r"</\s*(context|document|user_input|user|input|data|email|text|untrusted)\s*>\s*<",
        Lit(&["</"]),
        b"><",
    ),
    needs(
        p(
            FakeDelimiter,
            0.6,
            r"#{2,}[ \t]*(system|admin|developer)[ \t]*:",
            Lit(&["##"]),
            b":",
        ),
        &["system", "admin", "developer"],
    ),
    p(
        InstructionOverride,
        0.75,
        r"\bnew system (prompt|message|instructions)\s*:",
        Word(&["new system "]),
        b":",
    ),
];

const SEND_VERBS: &[&str] = &["forward", "send", "email", "transfer", "upload", "post", "export"];

/// `\A(?:\b(forward|send|…)\b[^\n]{0,80}\b(to|at)\s+[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,})` as
/// `regex_lite` reads it (ASCII `\b` and `\s`), by hand: the engine spent about 35k instructions per
/// try on the counted repetition, and benign mail is full of these verbs. The address is the part
/// that cannot backtrack: white space, then the maximal run of local-part bytes, `@`, and a domain run
/// holding a `.` (not first) followed by two letters.
pub fn send_to_address(text: &str) -> bool {
    let b = text.as_bytes();
    let word = |i: usize| crate::text::is_word_byte(b.get(i));
    let Some(verb) = SEND_VERBS
        .iter()
        .find(|v| b.starts_with(v.as_bytes()) && !word(v.len()))
    else {
        return false;
    };
    let run = |from: usize, class: fn(&u8) -> bool| {
        b.get(from..)
            .map_or(0, |r| r.iter().take_while(|c| class(c)).count())
    };
    // `\b(to|at)\s+local@domain` at `p` (after the verb: `p` is at least 1).
    let addressed = |p: usize| {
        let to_at = b
            .get(p..)
            .is_some_and(|r| r.starts_with(b"to") || r.starts_with(b"at"));
        if !to_at || word(p.wrapping_sub(1)) {
            return false;
        }
        let space = run(p + 2, |c| {
            matches!(c, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ')
        });
        let local_at = p + 2 + space;
        let local = run(local_at, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"._%+-".contains(c)
        });
        let at_sign = local_at + local;
        if space == 0 || local == 0 || b.get(at_sign) != Some(&b'@') {
            return false;
        }
        let domain_at = at_sign + 1;
        let domain = run(domain_at, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-')
        });
        let letter = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
        (domain_at + 1..domain_at + domain).any(|i| b.get(i) == Some(&b'.') && letter(i + 1) && letter(i + 2))
    };
    // `[^\n]{0,80}`: up to 80 characters other than a line feed.
    let mut p = verb.len();
    for taken in 0..=80 {
        if addressed(p) {
            return true;
        }
        match text.get(p..).and_then(|r| r.chars().next()) {
            Some(c) if c != '\n' && taken < 80 => p += c.len_utf8(),
            _ => return false,
        }
    }
    false
}

/// Innocent uses of attack words: the family's score is multiplied by the factor.
pub const DAMPENERS: &[(Family, f32, &str)] = &[
    (
        InstructionOverride,
        0.3,
        r"\b(ignore|disregard|forget|skip|scratch|cancel) (my|our|that|this) (own )?(previous|prior|earlier|last|above|original|first|old)? ?(instructions|instruction|request|message|prompt|question|answer|email|comment|typo|note|rules|draft)\b",
    ),
    (
        FakeDelimiter,
        0.45,
        r"\b((what does|what do|what is|what are|meaning of|explain|how does|how do)~4 (token|tokens|tag|tags|im start|im end|endoftext|inst|sys|chatml|template|templates|format|delimiter|delimiters)|tokenizer|tokenizers|special token|special tokens|chatml format|chat template|prompt format)\b",
    ),
    (
        InstructionOverride,
        0.3,
        r"\b(rules|conventions|guidelines|laws) of (grammar|poetry|chess|the game|rhyme|spelling|punctuation|physics|math|mathematics|etiquette|golf|football|soccer|tennis|baseball|basketball|cricket|poker|the road|thermodynamics)\b",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn expands_word_gaps() {
        assert_eq!(expand(r"a~3 b"), "a(?: [a-z0-9]+){0,3} b");
        assert_eq!(expand(r"a~12 b"), "a(?: [a-z0-9]+){0,12} b");
        assert_eq!(expand("x~y"), "x~y");
    }
}
