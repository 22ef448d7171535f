"""The starter labeling functions of the ``toxicity`` task (1 = toxic, 0 = not toxic).

Each LF votes only on a strong signal and abstains otherwise: precision over
recall, because the label model learns how far to trust an LF from its
agreements, and a noisy LF costs more than a silent one.

Speed comes from doing little per text. Every LF reads one shared view of the
text (lower-cased copy and token set, computed once per text through
:func:`~mlcycle.labeler.lfs.per_text_cache`); a pattern LF first asks whether
any of its trigger words is among the tokens (a set operation) and runs its
regular expression, compiled at import, only on the few texts that pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from mlcycle.labeler.lfs import labeling_function, per_text_cache, text_view
from mlcycle.labeler.votes import ABSTAIN

TOXIC = 1
NOT_TOXIC = 0


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation of literal words, longest first so that prefixes do not win."""
    return "|".join(
        re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True)
    )


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases written one after the other, separated by '|'."""
    return tuple(phrase.strip() for phrase in text.split("|") if phrase.strip())


def _forms(words: Iterable[str]) -> frozenset[str]:
    """The words with their plural forms, as tokens (for trigger sets)."""
    return frozenset(f for w in words for f in (w, w + "s", w + "es"))


@dataclass(frozen=True)
class _Rule:
    """A regular expression searched only in texts that have one of its trigger words.

    Every match of ``pattern`` contains a trigger word, so a text without any is
    skipped at the cost of one set operation. ``direct`` rules ignore matches
    that are reported or negated ("told him to shut up", "don't kill yourself").
    """

    triggers: frozenset[str]
    pattern: re.Pattern[str]
    direct: bool = False


# A match preceded by these is reported or negated speech, not said to the reader.
_REPORTED = re.compile(r"(?:\bto|\bnot|n't|\bt|\bnever|\bwould|\bdon't|\bdont)\s+$")


def _rule(triggers: Iterable[str], pattern: str, *, direct: bool = False) -> _Rule:
    return _Rule(frozenset(triggers), re.compile(pattern), direct)


class _RuleSet:
    """Rules that make one detector; a text with none of their trigger words costs one test."""

    def __init__(self, *rules: _Rule) -> None:
        self.rules = rules
        self.triggers = frozenset().union(*(rule.triggers for rule in rules))

    def matches(self, text: str) -> bool:
        """Whether one of the rules matches ``text``."""
        view = text_view(text)
        tokens = view.tokens
        if self.triggers.isdisjoint(tokens):
            return False
        for rule in self.rules:
            if rule.triggers.isdisjoint(tokens):
                continue
            if not rule.direct:
                if rule.pattern.search(view.lower) is not None:
                    return True
                continue
            for match in rule.pattern.finditer(view.lower):
                start = match.start()
                if _REPORTED.search(view.lower, max(0, start - 8), start) is None:
                    return True
        return False


# --------------------------------------------------------------------------- profanity

# better-profanity's word list mixes swear words with words whose ordinary sense
# dominates in discussion (anatomy, drugs, violence, identity terms, surnames, place
# names, "god", "hell", "kill"). Those would make `profanity` vote toxic on a talk page
# about medicine or history, so they are left out; identity terms are the business of
# `identity_attack`, violence that of `threat`.
_NOT_PROFANE = frozenset(
    """
    anal anus areole arian aryan asanchez auto autoerotic bdsm bestial bestiality bimbo bimbos
    bondage booty breasts busty cipa clitoris cnut cow cowgirl cowgirls crotch cum cuming deep
    dink dinks dog doggin dogging dong dopey drunk duche dummy ejaculate ejaculated ejaculates
    ejaculating ejaculatings ejaculation ejakulate enlargement erect erection erotic erotism
    extacy extasy facial fack fanny fat fellate fellatio femdom fingering fisted fisting fisty
    flange floozy fondle foobar fubar freex frigg frigga futanari gae gai gang ganja gay gays
    gey gigolo glans god gonad gonads gringo gspot g-spot guido hardon hebe hell hemp hentai
    heroin herp herpes herpy heshe hitler hiv hoar hoare hoer homey homo homoerotic hooch hookah
    hooker hooter hooters hoor hootch hore horniest horny howtokill howtomurdep hump humped
    humping hussy hymen inbred incest injun jap jerk jerked junkie junky kill kinbaku kinky
    kinkyjesus klan kkk knob kum labia lech len leper lesbians lmao lmfao loin loins lust
    lusting lusty lube mams masochist massa maxi menses menstruate menstruation meth molest
    muff murder naked napalm nappy nazi nazism negro nig nigg niggle nimrod ninny nipple
    nipples nob nude nudes omg opiate opium oral orally organ orgasim orgasims orgasm orgasmic
    orgasms orgies orgy ovary ovum ovums paddy panties pantie panty pastie pasty pawn pcp
    pedophile pedophilia pedophiliac pee peepee penetrate penetration penial penile penis
    perversion peyote phalli phallic pimp pimpis pinko playboy pms polack pollock porn porno
    pornography pornos pot potty prig pron prostitute prude pubic pubis puss pusse pussi queer
    queers queero quicky racy rape raped raper raping rapist raunch rectal rectum rectus reefer
    reich revue rum rump ruski sadism sadist sandbar scantily schizo screw screwed screwing
    scrotum seaman seamen seduce semen sex sexual shag shibari shibary shota sissy skag scag
    slave sleaze sleazy slope smut smutty snatch sniper snuff sodom souse soused sperm spunk
    steamy stoned strip stroke stupid suck sucked sucking tampon tawdry teat teets teez teste
    testee testes testical testicle testis thrust thug tinkle tit titi toke toots tramp
    transsexual trashy tush ugly undies unwed urinal urine uterus uzi v14gra v1gra valium
    viagra virgin vixen vodka vomit voyeur vulgar vulva wad wang wazoo wedgie weed weenie
    weiner weirdo wench whiz willies willy womb woody xx xxx yaoi yury threesome xrated2g1c
    damn goddam crap pissed poop fart boob wop vagina vag
    """.split()
)
# Swear-word stems that make any word containing them profane ("bullshit",
# "motherfucking"), so compounds need no list; minus the innocent carriers.
_STEMS = re.compile(r"fuck|fcuk|shit|bitch|cunt|whore|nigger|nigga|faggot|asshole|wank")
_STEM_EXCEPTIONS = re.compile(r"scunthorp|shiitake|shitake|snigger|swank|mishit")
# Leetspeak ("sh1t", "a$$hole", "b!tch") and masks ("f*ck", "sh*t").
_LEET = str.maketrans("@4$5!1|307+", "aassiileott")
_OBFUSCATED = re.compile(r"[@$!*|+](?=[a-z])|(?<=[a-z])[@$!*|+]")
_SYMBOL = re.compile(r"[@$!*|+]")  # a one-character class: sre scans for it in C
_OBFUSCATED_TOKEN = re.compile(r"[a-z0-9@$!*|+]+")
_MAX_OBFUSCATED = 24  # longer runs of symbols and letters are not a disguised word
_MASKABLE = ("fuck", "shit", "bitch", "cunt", "asshole", "dick", "pussy", "bastard", "whore")
_REPEATS = re.compile(r"([a-z])\1{2,}")
# Letters spelled apart: "f u c k", "s.h.i.t".
_SPACED = re.compile(r"(?<![a-z])[a-z](?:[\s._*-]+[a-z]){2,}(?![a-z])")
_SPACED_WORDS = tuple(frozenset(w) for w in ("fuck", "shit", "cunt", "bitch", "dick"))


def _load_lexicon() -> tuple[frozenset[str], dict[str, re.Pattern[str]]]:
    """better-profanity's list: single words as a set; phrases as regexes keyed by last word."""
    text = files("better_profanity").joinpath("profanity_wordlist.txt").read_text("utf-8")
    words: set[str] = set()
    phrases: dict[str, list[str]] = {}
    for raw in text.splitlines():
        entry = raw.strip().lower()
        parts = re.split(r"[\s-]+", entry)
        if not entry or any(p in _NOT_PROFANE for p in (*parts, "".join(parts))):
            continue
        if len(parts) == 1 and parts[0].isalnum():
            words.add(entry)
        elif all(part.isalnum() for part in parts) and len(parts[-1]) > 1:
            # Keyed by the last word, usually the rarer one ("blue waffle").
            phrases.setdefault(parts[-1], []).append(r"[\s-]+".join(parts))
        # The rest ("f.u.c.k", "sh!t", "masterbat*") are obfuscations of words the
        # leetspeak and spaced-letter checks already find.
    # Phrases of single letters ("s-h-i-t", "f-u-c-k") are left to the spaced-letter check,
    # and phrases holding a profane word ("mother fucker") to the word check.
    compiled = {
        last: re.compile(rf"\b(?:{'|'.join(sorted(alts, key=len, reverse=True))})\b")
        for last, alts in phrases.items()
        if last not in words and _STEMS.search(last) is None
    }
    return frozenset(words), compiled


# Common slurs and insults the list lacks.
_SUPPLEMENT = frozenset("hoe hoes thot thots bitchass dipshit skank skanks".split())
PROFANE_WORDS, _PROFANE_PHRASES = _load_lexicon()
PROFANE_WORDS |= _SUPPLEMENT
_PHRASE_ENDS = frozenset(_PROFANE_PHRASES)
# Tokens already judged, so that each distinct word is analysed once per process: after
# warm-up a text costs two set operations. Bounded: cleared when it grows too large.
_CLEAN_TOKENS: set[str] = set()
_PROFANE_TOKENS: set[str] = set(PROFANE_WORDS)
_MAX_SEEN_TOKENS = 2_000_000
# Swear words that are also first names or surnames: profane only in lower or upper case.
_ALSO_NAMES = frozenset({"dick", "cock", "willy"}) & PROFANE_WORDS
_AS_SWEAR_WORD = re.compile(
    rf"\b(?:{'|'.join(sorted(_ALSO_NAMES))}|{'|'.join(sorted(w.upper() for w in _ALSO_NAMES))})\b"
)


def is_profane_word(token: str) -> bool:
    """Whether one lower-case token is profane: a lexicon word, a compound, leetspeak."""
    if token in PROFANE_WORDS:
        return True
    if _STEMS.search(token) is not None:
        return _STEM_EXCEPTIONS.search(token) is None
    if not token.isalpha() and not token.isdigit():
        # "sh1t", "4r5e": digits standing for letters (but "455" is a number).
        plain = token.translate(_LEET)
        if plain != token and plain.isalpha() and is_profane_word(plain):
            return True
    if _REPEATS.search(token) is not None:  # "fuuuck", "shiiit"
        return is_profane_word(_REPEATS.sub(r"\1", token)) or is_profane_word(
            _REPEATS.sub(r"\1\1", token)
        )
    return False


def _masked_or_leet(lower: str) -> bool:
    for token in _OBFUSCATED_TOKEN.findall(lower):
        token = token.strip("!|+")
        if len(token) > _MAX_OBFUSCATED:
            continue
        if "*" in token:
            core = token.replace("*", "")
            if len(core) >= 1 and len(core) * 2 >= len(token):
                masked = re.compile(re.escape(token).replace(r"\*", "[a-z]"))
                if any(masked.fullmatch(word) for word in _MASKABLE):
                    return True
        elif token and not token.isdigit() and is_profane_word(token.translate(_LEET)):
            return True
    return False


@per_text_cache
def contains_profanity(text: str) -> bool:
    """Whether ``text`` has a profane word, phrase or obfuscated swear word."""
    view = text_view(text)
    tokens = view.tokens
    if not _PROFANE_TOKENS.isdisjoint(tokens):
        hits = _PROFANE_TOKENS.intersection(tokens)
        # "Dick Cheney", "Moby-Dick": a capitalised name is not the swear word.
        if not hits <= _ALSO_NAMES or _AS_SWEAR_WORD.search(text) is not None:
            return True
    unseen = tokens.difference(_CLEAN_TOKENS, _PROFANE_TOKENS)
    if unseen:
        if len(_CLEAN_TOKENS) > _MAX_SEEN_TOKENS:
            _CLEAN_TOKENS.clear()
        profane = [token for token in unseen if is_profane_word(token)]
        _CLEAN_TOKENS.update(unseen.difference(profane))
        if profane:
            _PROFANE_TOKENS.update(profane)
            return True
    lower = view.lower
    for last in _PHRASE_ENDS.intersection(tokens):
        if _PROFANE_PHRASES[last].search(lower) is not None:
            return True
    if (
        _SYMBOL.search(lower) is not None
        and _OBFUSCATED.search(lower) is not None
        and _masked_or_leet(lower)
    ):
        return True
    if any(letters <= tokens for letters in _SPACED_WORDS):
        for spaced in _SPACED.findall(lower):
            if is_profane_word(re.sub(r"[\s._*-]+", "", spaced)):
                return True
    return False


@labeling_function(description="A profanity-lexicon word (better-profanity), also obfuscated.")
def profanity(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when a profanity-lexicon word occurs as a token ('sh1t', 'f*ck' included)."""
    return TOXIC if contains_profanity(text) else ABSTAIN


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
_INSULT_PHRASES = _phrases(
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
_DISMISSALS = _phrases(
    "shut up|shut the fuck up|shut the hell up|shut your mouth|shut your face|stfu|gtfo|"
    "fuck you|fuck u|fuck off|screw you|go fuck yourself|get a life|piss off|bugger off|"
    "sod off|suck my dick|suck my cock|suck my balls|eat shit|you suck|u suck"
)
_INSULT_WORDS = (
    _forms(_INSULT_NOUNS)
    | frozenset(_INSULT_ADJECTIVES)
    | frozenset(p.split()[0] for p in _INSULT_PHRASES)
)
_INSULT_RULES = _RuleSet(
    _rule(
        _INSULT_WORDS,
        rf"\b{_YOU_ARE}\s+{_INTENSIFIERS}(?:(?:{_alternation(_INSULT_NOUNS)})(?:e?s)?\b"
        rf"|(?:{_alternation(_INSULT_ADJECTIVES)}|{_alternation(_INSULT_PHRASES)})\b)",
    ),
    _rule(
        _forms(_DIRECT_NOUNS) | frozenset(p.split()[0] for p in _INSULT_PHRASES),
        r"\b(?:you|u|ya)\s+(?:(?:stupid|dumb|fucking|pathetic|little|ignorant|worthless)\s+)*"
        rf"(?:(?:{_alternation(_DIRECT_NOUNS)})(?:e?s)?|{_alternation(_INSULT_PHRASES)})\b",
    ),
    _rule(
        _INSULT_WORDS,
        rf"\b(?:go\s+away|get\s+lost|go\s+home)\b[\s,.!]*(?:you\s+)?{_INTENSIFIERS}"
        rf"(?:{_alternation(_INSULT_NOUNS)})(?:e?s)?\b",
    ),
    _rule(
        {"shut", "stfu", "gtfo", "fuck", "screw", "life", "piss", "bugger", "sod", "suck", "eat"},
        rf"\b(?:{_alternation(_DISMISSALS)})\b",
        direct=True,
    ),
)


@per_text_cache
def is_insult(text: str) -> bool:
    """Whether ``text`` insults the person it addresses."""
    return _INSULT_RULES.matches(text)


@labeling_function(description="An insult aimed at the reader: 'you are an idiot', 'shut up'.")
def insult_second_person(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when an insult is addressed to a second person."""
    return TOXIC if is_insult(text) else ABSTAIN


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


@labeling_function(description="Mostly capital letters over enough letters (not acronyms).")
def shouting(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when most letters of a long enough text are capitals."""
    letters, upper = letter_case(text)
    if letters >= SHOUTING_MIN_LETTERS and upper >= SHOUTING_MIN_UPPER_SHARE * letters:
        return TOXIC
    return ABSTAIN


# --------------------------------------------------------------------------- threats

_HARM_VERBS = (
    "kill murder shoot stab strangle choke behead hang lynch rape slit torture hurt punch "
    "smash burn bury gut skin".split()
)
_HARM_PHRASES = _phrases(
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
_CURSES = _phrases(
    "kill yourself|kill urself|kill your self|kys|go die|go and die|drop dead|"
    "die in a fire|die in a hole|i know where you live|i know where u live|watch your back|"
    "put a bullet in your|put a bullet through your|you're dead meat|you are dead meat|"
)
_THREAT_RULES = _RuleSet(
    _rule(
        {*_HARM_VERBS, "beat", "hunt", "break", "smash", "cut", "slit"},
        rf"\b(?:i|we|someone|somebody|i'm|im|we're){_WILL}\s+(?:(?!not\b|never\b)\w+\s+){{0,2}}?"
        rf"(?:(?:{_alternation(_HARM_VERBS)})\s+(?:you|u|ya|yourself|you\s+all|your\s+(?:family|"
        rf"kids|children|mother|mom|wife))\b|(?:{_alternation(_HARM_PHRASES)})\b)",
    ),
    # "I'll find you" is a threat; "I'll find you a source" is help: only at a clause's end.
    _rule(
        {"find", "get", "come", "hunt"},
        r"\bi(?:'ll|\s+will|\s+am\s+going\s+to|'m\s+going\s+to|'m\s+gonna|\s+gonna)\s+"
        r"(?:find|get|come\s+for|hunt)\s+(?:you|u)\s*(?:[.!,]|$|\band\b|\bsoon\b|\bone\s+day\b)",
    ),
    _rule(
        {"die", *_DEATHS},
        r"\b(?:you|u|ya)\s+(?:should|ought\s+to|deserve\s+to|need\s+to|must|will|are\s+going\s+to|"
        r"'re\s+going\s+to|re\s+going\s+to|gonna|are\s+gonna|'re\s+gonna|better)\s+(?:\w+\s+)?"
        rf"(?:die|be\s+(?:{_alternation(_DEATHS)}))\b",
    ),
    _rule(
        {"hope"},
        r"\b(?:(?:i|we)\s+)?hope\s+(?:you|u|ya|your\s+\w+)\s+(?:\w+\s+){0,2}?(?:die|dies|burn|rot|"
        r"choke|gets?\s+(?:hit|shot|killed|raped|cancer|aids|run\s+over|murdered|stabbed))\b",
    ),
    _rule(
        {"kill", "kys", "die", "dead", "live", "watch", "bullet", "meat"},
        rf"\b(?:{_alternation(_CURSES)})\b",
        direct=True,
    ),
)


@per_text_cache
def is_threat(text: str) -> bool:
    """Whether ``text`` threatens or wishes violence on someone."""
    return _THREAT_RULES.matches(text)


@labeling_function(description="A threat of violence: 'I will kill you', 'you should die'.")
def threat(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when the text threatens or wishes violence on someone."""
    return TOXIC if is_threat(text) else ABSTAIN


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
    rf"(?:(?:the\s+)?(?:{_alternation(_GROUPS)})"
    rf"|(?:{_alternation(_GROUP_ADJECTIVES)})\s+(?:people|folks|men|guys))"
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
_IDENTITY_RULES = _RuleSet(
    # A slur token, except as a surname ("Van Dyke").
    _rule(_SLURS, rf"(?<!\bvan\s)\b(?:{_alternation(_SLURS)})\b"),
    _rule({p.split()[-1] for p in _SLUR_PHRASES}, rf"\b(?:{_alternation(_SLUR_PHRASES)})\b"),
    _rule(
        _GROUP_WORDS,
        r"\b(?:fucking|fuckin|filthy|dirty|stupid|damn|bloody|goddamn|disgusting|subhuman)\s+"
        rf"{_GROUP}\b"
        rf"|\b{_GROUP}\s+(?:are|r|is)\s+(?:all\s+|just\s+|nothing\s+but\s+|such\s+|so\s+|like\s+)*"
        rf"(?:{_alternation(_DEHUMANIZING)})\b"
        # "police kill black people" reports; "we should kill all ..." wishes.
        r"|\b(?:we\s+(?:should|must|need\s+to|have\s+to|gotta)|let's|lets|i\s+(?:want|wanna|"
        rf"would)(?:\s+to)?|should|must)\s+(?:{_alternation(_HOSTILE_VERBS)})\s+(?:all\s+)?"
        rf"(?:these\s+|those\s+)?{_GROUP}\b"
        rf"|\bdeath\s+to\s+(?:all\s+)?{_GROUP}\b"
        rf"|\b{_GROUP}\s+(?:should|must|need\s+to|ought\s+to)\s+(?:all\s+)?(?:die|be\s+killed|"
        r"be\s+gassed|be\s+deported|be\s+exterminated|be\s+shot|burn|go\s+back)\b"
        r"|\b(?:i|we)\s+(?:\w+\s+)?(?:hate|despise|can't\s+stand|cant\s+stand)\s+(?:all\s+)?"
        rf"{_GROUP}\b",
    ),
    _rule(
        {"africa", "mexico", "china", "india", "pakistan", "jungle", "country", "desert", "cave"},
        r"\bgo\s+back\s+to\s+(?:africa|mexico|china|india|pakistan|the\s+jungle|your\s+(?:own\s+)?"
        r"(?:country|desert|cave|jungle|shithole))\b",
    ),
    _rule(
        {"gay"},
        r"\b(?:that's|thats|that\s+is|so|how|you're|youre|you\s+are|ur)\s+(?:so\s+)?gay\b",
    ),
)


@per_text_cache
def is_identity_attack(text: str) -> bool:
    """Whether ``text`` attacks a group by identity: a slur, or a group term used with hostility."""
    return _IDENTITY_RULES.matches(text)


@labeling_function(description="An identity term (religion, ethnicity, sexuality, gender, "
                   "disability) in a hostile pattern, or a slur.")  # fmt: skip
def identity_attack(text: str, metadata: Mapping[str, Any]) -> int:
    """Toxic when an identity group is attacked (a slur or hostility), not merely mentioned."""
    return TOXIC if is_identity_attack(text) else ABSTAIN


# --------------------------------------------------------------------------- benign discussion

# Words that by themselves mark polite or editorial talk.
_BENIGN_WORDS = frozenset(
    "thanks thx please imo imho agreed citation citations cite cited source sources sourced "
    "reference references referenced consensus wp reliable verifiable regards sincerely".split()
)
_BENIGN_PHRASES = _phrases(
    "i think|i believe|in my opinion|i agree|i disagree|thank you|see also|according to|"
    "talk page|good point|fair enough|i understand|you are right|you're right|i suggest|"
    "i would suggest"
)
_BENIGN_RULES = _RuleSet(
    _rule({p.split()[-1] for p in _BENIGN_PHRASES}, rf"\b(?:{_alternation(_BENIGN_PHRASES)})\b")
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


@labeling_function(description="Polite or editorial discussion (thanks, sources, 'I think') "
                   "without profanity, insults, threats or identity attacks.")  # fmt: skip
def benign_discussion(text: str, metadata: Mapping[str, Any]) -> int:
    """Not toxic when the text reads as polite or editorial discussion and nothing hostile."""
    tokens = text_view(text).tokens
    if _BENIGN_WORDS.isdisjoint(tokens) and not _BENIGN_RULES.matches(text):
        return ABSTAIN
    if not _BENIGN_VETO.isdisjoint(tokens) or contains_profanity(text):
        return ABSTAIN
    if is_insult(text) or is_threat(text) or is_identity_attack(text):
        return ABSTAIN
    return NOT_TOXIC
