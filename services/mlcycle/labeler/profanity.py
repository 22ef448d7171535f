"""Profanity: a lexicon word, a swear-word compound, or a disguised one ("sh1t", "f*ck", "f u c k").

The lexicon is better-profanity's word list, less the words whose ordinary
sense dominates in discussion. Each distinct token is judged once per process
and remembered, so after warm-up a text costs a couple of set operations.
"""

from __future__ import annotations

import re
from importlib.resources import files

from mlcycle.labeler.text_views import per_text_cache, text_view

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
