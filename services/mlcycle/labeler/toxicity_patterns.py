"""What the toxicity detectors look for: insults, threats, identity attacks, shouting, politeness.

Each detector is a :class:`~mlcycle.labeler.toxicity_rules.RuleSet` of
trigger-gated patterns over the shared text view, memoized per text so that
the labeling functions that share a detector run it once.
"""

from __future__ import annotations

from mlcycle.labeler.profanity import contains_profanity
from mlcycle.labeler.text_views import per_text_cache, text_view
from mlcycle.labeler.toxicity_rules import RuleSet, alternation, phrases, rule, word_forms

# --------------------------------------------------------------------------- insults

# Nouns and adjectives that insult a person when said of "you".
_INSULT_NOUNS = (
    "idiot moron imbecile loser retard cretin dumbass dimwit nitwit halfwit buffoon jackass "
    "asshole arsehole dickhead dick prick bastard bitch cunt twat wanker tosser douche "
    "douchebag scumbag scum pig clown fool jerk creep freak lunatic psycho hypocrite liar "
    "coward troll parasite vermin slut whore faggot fag numpty muppet twit cocksucker "
    "motherfucker shithead fuckwit".split()
)
# Straight after "you" only nouns that are not also verbs: "you fool yourself" is no insult.
_DIRECT_NOUNS = frozenset(_INSULT_NOUNS) - frozenset(
    "fool troll pig clown scum vermin freak creep dick jerk twit muppet liar psycho lunatic "
    "parasite".split()
)
_INSULT_PHRASES = phrases(
    "piece of shit|piece of crap|piece of garbage|piece of trash|waste of space|"
    "waste of oxygen|waste of air|sack of shit"
)
_INSULT_ADJECTIVES = (
    "stupid dumb idiotic moronic retarded pathetic worthless useless ignorant brainless "
    "clueless incompetent disgusting pitiful braindead delusional imbecilic".split()
)
_INTENSIFIERS = (
    r"(?:(?:such|so|really|truly|just|a|an|the|complete|total|utter|absolute|fucking|fuckin|"
    r"bloody|damn|little|big|stupid|dumb|pathetic|ignorant|sad|obvious|typical|worthless|"
    r"lying|arrogant|ugly|fat|old)\s+)*"
)
_YOU_ARE = (
    r"(?:(?:you|u|ya|ye)(?:\s+(?:guys|people|lot|all|two|both))?\s*(?:'re|\s+are|\s+r|re|"
    r"\s+were|\s+sound\s+like|\s+look\s+like|\s+act\s+like)|your|ur|youre|yer|are\s+you|r\s+u|"
    r"aren'?t\s+you)"
)
_DISMISSALS = phrases(
    "shut up|shut the fuck up|shut the hell up|shut your mouth|shut your face|stfu|gtfo|"
    "fuck you|fuck u|fuck off|screw you|go fuck yourself|get a life|piss off|bugger off|"
    "sod off|suck my dick|suck my cock|suck my balls|eat shit|you suck|u suck"
)
_INSULT_WORDS = (
    word_forms(_INSULT_NOUNS)
    | frozenset(_INSULT_ADJECTIVES)
    | frozenset(p.split()[0] for p in _INSULT_PHRASES)
)
_INSULT_RULES = RuleSet(
    rule(
        _INSULT_WORDS,
        rf"\b{_YOU_ARE}\s+{_INTENSIFIERS}(?:(?:{alternation(_INSULT_NOUNS)})(?:e?s)?\b"
        rf"|(?:{alternation(_INSULT_ADJECTIVES)}|{alternation(_INSULT_PHRASES)})\b)",
    ),
    rule(
        word_forms(_DIRECT_NOUNS) | frozenset(p.split()[0] for p in _INSULT_PHRASES),
        r"\b(?:you|u|ya)\s+(?:(?:stupid|dumb|fucking|pathetic|little|ignorant|worthless)\s+)*"
        rf"(?:(?:{alternation(_DIRECT_NOUNS)})(?:e?s)?|{alternation(_INSULT_PHRASES)})\b",
    ),
    rule(
        _INSULT_WORDS,
        rf"\b(?:go\s+away|get\s+lost|go\s+home)\b[\s,.!]*(?:you\s+)?{_INTENSIFIERS}"
        rf"(?:{alternation(_INSULT_NOUNS)})(?:e?s)?\b",
    ),
    rule(
        {"shut", "stfu", "gtfo", "fuck", "screw", "life", "piss", "bugger", "sod", "suck", "eat"},
        rf"\b(?:{alternation(_DISMISSALS)})\b",
        direct=True,
    ),
)


@per_text_cache
def is_insult(text: str) -> bool:
    """Whether ``text`` insults the person it addresses."""
    return _INSULT_RULES.matches(text)


# --------------------------------------------------------------------------- shouting

SHOUTING_MIN_LETTERS = 30
SHOUTING_MIN_UPPER_SHARE = 0.8
_ASCII_UPPER = bytes(range(65, 91))
_ASCII_NOT_LETTERS = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))


def letter_case(text: str) -> tuple[int, int]:
    """(letters, upper-case letters) in ``text``."""
    if text.isascii():
        # bytes.translate deleting characters is one C loop, ~30x a Python-level count.
        letters = text.encode("ascii").translate(None, _ASCII_NOT_LETTERS)
        return len(letters), len(letters) - len(letters.translate(None, _ASCII_UPPER))
    return sum(map(str.isalpha, text)), sum(map(str.isupper, text))


# --------------------------------------------------------------------------- threats

_HARM_VERBS = (
    "kill murder shoot stab strangle choke behead hang lynch rape slit torture hurt punch "
    "smash burn bury gut skin".split()
)
_HARM_PHRASES = phrases(
    "beat the shit out of|beat the crap out of|beat the hell out of|beat the life out of|"
    "beat you up|beat u up|hunt you down|hunt u down|break your neck|break your legs|"
    "break your face|smash your face|cut your throat|slit your throat"
)
_WILL = (
    r"(?:'ll|\s+will|\s+am\s+going\s+to|'m\s+going\s+to|m\s+going\s+to|\s+are\s+going\s+to|"
    r"'re\s+going\s+to|\s+gonna|'m\s+gonna|m\s+gonna|\s+shall|\s+would|'d|\s+want\s+to|"
    r"\s+wanna|\s+should|\s+ought\s+to|\s+need\s+to|\s+must|\s+will\s+personally)"
)
_DEATHS = (
    "killed shot hanged hung raped murdered executed gassed lynched beaten burned burnt "
    "stabbed strangled".split()
)
_CURSES = phrases(
    "kill yourself|kill urself|kill your self|kys|go die|go and die|drop dead|"
    "die in a fire|die in a hole|i know where you live|i know where u live|watch your back|"
    "put a bullet in your|put a bullet through your|you're dead meat|you are dead meat|"
)
_THREAT_RULES = RuleSet(
    rule(
        {*_HARM_VERBS, "beat", "hunt", "break", "smash", "cut", "slit"},
        rf"\b(?:i|we|someone|somebody|i'm|im|we're){_WILL}\s+(?:(?!not\b|never\b)\w+\s+){{0,2}}?"
        rf"(?:(?:{alternation(_HARM_VERBS)})\s+(?:you|u|ya|yourself|you\s+all|your\s+(?:family|"
        rf"kids|children|mother|mom|wife))\b|(?:{alternation(_HARM_PHRASES)})\b)",
    ),
    # "I'll find you" is a threat; "I'll find you a source" is help: only at a clause's end.
    rule(
        {"find", "get", "come", "hunt"},
        r"\bi(?:'ll|\s+will|\s+am\s+going\s+to|'m\s+going\s+to|'m\s+gonna|\s+gonna)\s+"
        r"(?:find|get|come\s+for|hunt)\s+(?:you|u)\s*(?:[.!,]|$|\band\b|\bsoon\b|\bone\s+day\b)",
    ),
    rule(
        {"die", *_DEATHS},
        r"\b(?:you|u|ya)\s+(?:should|ought\s+to|deserve\s+to|need\s+to|must|will|are\s+going\s+to|"
        r"'re\s+going\s+to|re\s+going\s+to|gonna|are\s+gonna|'re\s+gonna|better)\s+(?:\w+\s+)?"
        rf"(?:die|be\s+(?:{alternation(_DEATHS)}))\b",
    ),
    rule(
        {"hope"},
        r"\b(?:(?:i|we)\s+)?hope\s+(?:you|u|ya|your\s+\w+)\s+(?:\w+\s+){0,2}?(?:die|dies|burn|rot|"
        r"choke|gets?\s+(?:hit|shot|killed|raped|cancer|aids|run\s+over|murdered|stabbed))\b",
    ),
    rule(
        {"kill", "kys", "die", "dead", "live", "watch", "bullet", "meat"},
        rf"\b(?:{alternation(_CURSES)})\b",
        direct=True,
    ),
)


@per_text_cache
def is_threat(text: str) -> bool:
    """Whether ``text`` threatens or wishes violence on someone."""
    return _THREAT_RULES.matches(text)


# --------------------------------------------------------------------------- identity attacks

# Groups by religion, ethnicity or nationality, sexuality, gender and disability. A
# mention is not an attack: a group term only counts inside a hostile pattern.
_GROUPS = (
    "muslim muslims moslems islamists jew jews christians catholics hindus sikhs atheists "
    "blacks whites asians africans mexicans mexican latinos hispanics arabs arab chinese "
    "indians pakistanis immigrants immigrant refugees migrants gays lesbians homosexuals "
    "bisexuals transgenders transgender queers women females feminists".split()
)
_GROUP_ADJECTIVES = (
    "black white jewish muslim gay trans asian mexican arab disabled autistic".split()
)
_GROUP = (
    rf"(?:(?:the\s+)?(?:{alternation(_GROUPS)})"
    rf"|(?:{alternation(_GROUP_ADJECTIVES)})\s+(?:people|folks|men|guys))"
)
_GROUP_WORDS = frozenset(_GROUPS) | frozenset(_GROUP_ADJECTIVES)
# Slurs attack by themselves, whatever the context.
_SLURS = frozenset(
    "faggot faggots fags nigger niggers kike kikes spic spics chinks trannies "
    "dyke dykes wetback wetbacks raghead ragheads towelhead towelheads sandnigger sandniggers "
    "pakis gook gooks coons beaner beaners zipperhead zipperheads niglet niglets".split()
)
_SLUR_PHRASES = ("sand nigger", "camel jockey", "camel jockeys", "porch monkey", "jungle bunny")
_DEHUMANIZING = (
    "animals scum vermin evil disgusting subhuman sub-human savages parasites rats pigs trash "
    "garbage filth filthy inferior retarded criminals rapists terrorists cockroaches monkeys "
    "apes dogs worthless degenerates degenerate".split()
) + ["a disease", "a plague", "a cancer", "cancer", "a virus", "not human", "less than human"]
_HOSTILE_VERBS = "kill gas exterminate deport hang shoot lynch nuke eradicate".split() + [
    "wipe out",
    "get rid of",
]
_IDENTITY_RULES = RuleSet(
    # A slur token, except as a surname ("Van Dyke").
    rule(_SLURS, rf"(?<!\bvan\s)\b(?:{alternation(_SLURS)})\b"),
    rule({p.split()[-1] for p in _SLUR_PHRASES}, rf"\b(?:{alternation(_SLUR_PHRASES)})\b"),
    rule(
        _GROUP_WORDS,
        r"\b(?:fucking|fuckin|filthy|dirty|stupid|damn|bloody|goddamn|disgusting|subhuman)\s+"
        rf"{_GROUP}\b"
        rf"|\b{_GROUP}\s+(?:are|r|is)\s+(?:all\s+|just\s+|nothing\s+but\s+|such\s+|so\s+|like\s+)*"
        rf"(?:{alternation(_DEHUMANIZING)})\b"
        # "police kill black people" reports; "we should kill all ..." wishes.
        r"|\b(?:we\s+(?:should|must|need\s+to|have\s+to|gotta)|let's|lets|i\s+(?:want|wanna|"
        rf"would)(?:\s+to)?|should|must)\s+(?:{alternation(_HOSTILE_VERBS)})\s+(?:all\s+)?"
        rf"(?:these\s+|those\s+)?{_GROUP}\b"
        rf"|\bdeath\s+to\s+(?:all\s+)?{_GROUP}\b"
        rf"|\b{_GROUP}\s+(?:should|must|need\s+to|ought\s+to)\s+(?:all\s+)?(?:die|be\s+killed|"
        r"be\s+gassed|be\s+deported|be\s+exterminated|be\s+shot|burn|go\s+back)\b"
        r"|\b(?:i|we)\s+(?:\w+\s+)?(?:hate|despise|can't\s+stand|cant\s+stand)\s+(?:all\s+)?"
        rf"{_GROUP}\b",
    ),
    rule(
        {"africa", "mexico", "china", "india", "pakistan", "jungle", "country", "desert", "cave"},
        r"\bgo\s+back\s+to\s+(?:africa|mexico|china|india|pakistan|the\s+jungle|your\s+(?:own\s+)?"
        r"(?:country|desert|cave|jungle|shithole))\b",
    ),
    rule(
        {"gay"},
        r"\b(?:that's|thats|that\s+is|so|how|you're|youre|you\s+are|ur)\s+(?:so\s+)?gay\b",
    ),
)


@per_text_cache
def is_identity_attack(text: str) -> bool:
    """Whether ``text`` attacks a group by identity: a slur, or a group term used with hostility."""
    return _IDENTITY_RULES.matches(text)


# --------------------------------------------------------------------------- benign discussion

# Words that by themselves mark polite or editorial talk.
_BENIGN_WORDS = frozenset(
    "thanks thx please imo imho agreed citation citations cite cited source sources sourced "
    "reference references referenced consensus wp reliable verifiable regards sincerely".split()
)
_BENIGN_PHRASES = phrases(
    "i think|i believe|in my opinion|i agree|i disagree|thank you|see also|according to|"
    "talk page|good point|fair enough|i understand|you are right|you're right|i suggest|"
    "i would suggest"
)
_BENIGN_RULES = RuleSet(
    rule({p.split()[-1] for p in _BENIGN_PHRASES}, rf"\b(?:{alternation(_BENIGN_PHRASES)})\b")
)
# Not insults by themselves, but no polite text has them; and talk about identity groups
# is where polite words most often wrap an attack.
_BENIGN_VETO = (
    frozenset(
        "idiot idiots moron morons stupid dumb retard retarded loser losers pathetic die kill "
        "hate scum liar liars shut stfu ugly disgusting trash negro ghetto illegals".split()
    )
    | _GROUP_WORDS
    | _SLURS
)


def reads_as_benign(text: str) -> bool:
    """Whether ``text`` reads as polite or editorial discussion with nothing hostile in it."""
    tokens = text_view(text).tokens
    if _BENIGN_WORDS.isdisjoint(tokens) and not _BENIGN_RULES.matches(text):
        return False
    if not _BENIGN_VETO.isdisjoint(tokens) or contains_profanity(text):
        return False
    return not (is_insult(text) or is_threat(text) or is_identity_attack(text))
