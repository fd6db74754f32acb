"""Legacy Vietnamese encodings (TCVN3/ABC and VNI) <-> Unicode NFC.

The expected legacy strings below are written out literally, not computed from the
module's tables. They were cross-checked against independent sources:
- glibc's TCVN5712-1 converter (`iconv`), whose table VN3 is a subset of: every
  TCVN3 code, checked live by `test_tcvn3_agrees_with_glibc` where iconv has it;
- the published code tables and test data of two open-source converters (the npm
  package vietnamese-conversion, and the VNI table of the xvnkb keyboard driver):
  all 134 letters in VNI and the 74 TCVN3 codes agree, and their sample phrases are
  in SECOND_SOURCE_SAMPLES;
- the usual textbook samples "NguyÔn V¨n An" (TCVN3) and "Nguyeãn Vaên An" (VNI).
"""

from __future__ import annotations

import shutil
import string
import subprocess
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.conversion.mapping.vnencoding import (
    ENCODINGS,
    VIETNAMESE_LETTERS,
    Encoding,
    LegacyEncodingError,
    decode,
    decode_bytes,
    encode,
    encode_bytes,
    looks_legacy,
    tcvn3_fold,
)

# Each vowel with: no tone, huyền (grave), hỏi (hook), ngã (tilde), sắc (acute),
# nặng (dot below).
UNICODE_ROWS = {
    "a": "aàảãáạ",
    "ă": "ăằẳẵắặ",
    "â": "âầẩẫấậ",
    "e": "eèẻẽéẹ",
    "ê": "êềểễếệ",
    "i": "iìỉĩíị",
    "o": "oòỏõóọ",
    "ô": "ôồổỗốộ",
    "ơ": "ơờởỡớợ",
    "u": "uùủũúụ",
    "ư": "ưừửữứự",
    "y": "yỳỷỹýỵ",
}
# The same letters in TCVN3 (string form: the bytes read as cp1252).
TCVN3_ROWS = {
    "a": "aµ¶·¸¹",
    "ă": "¨»¼½¾Æ",
    "â": "©ÇÈÉÊË",
    "e": "eÌÎÏÐÑ",
    "ê": "ªÒÓÔÕÖ",
    "i": "i×ØÜÝÞ",
    "o": "oßáâãä",
    "ô": "«åæçèé",
    "ơ": "¬êëìíî",
    "u": "uïñòóô",
    "ư": "\xadõö÷øù",  # ư is 0xAD, the soft hyphen in cp1252: invisible on screen
    "y": "yúûüýþ",
}
TCVN3_OTHERS = {"đ": "®", "Ă": "¡", "Â": "¢", "Ê": "£", "Ô": "¤", "Ơ": "¥", "Ư": "¦", "Đ": "§"}
VNI_ROWS = {
    "a": ["a", "aø", "aû", "aõ", "aù", "aï"],
    "ă": ["aê", "aè", "aú", "aü", "aé", "aë"],
    "â": ["aâ", "aà", "aå", "aã", "aá", "aä"],
    "e": ["e", "eø", "eû", "eõ", "eù", "eï"],
    "ê": ["eâ", "eà", "eå", "eã", "eá", "eä"],
    "i": ["i", "ì", "æ", "ó", "í", "ò"],
    "o": ["o", "oø", "oû", "oõ", "où", "oï"],
    "ô": ["oâ", "oà", "oå", "oã", "oá", "oä"],
    "ơ": ["ô", "ôø", "ôû", "ôõ", "ôù", "ôï"],
    "u": ["u", "uø", "uû", "uõ", "uù", "uï"],
    "ư": ["ö", "öø", "öû", "öõ", "öù", "öï"],
    "y": ["y", "yø", "yû", "yõ", "yù", "î"],
    "A": ["A", "AØ", "AÛ", "AÕ", "AÙ", "AÏ"],
    "Ă": ["AÊ", "AÈ", "AÚ", "AÜ", "AÉ", "AË"],
    "Â": ["AÂ", "AÀ", "AÅ", "AÃ", "AÁ", "AÄ"],
    "E": ["E", "EØ", "EÛ", "EÕ", "EÙ", "EÏ"],
    "Ê": ["EÂ", "EÀ", "EÅ", "EÃ", "EÁ", "EÄ"],
    "I": ["I", "Ì", "Æ", "Ó", "Í", "Ò"],
    "O": ["O", "OØ", "OÛ", "OÕ", "OÙ", "OÏ"],
    "Ô": ["OÂ", "OÀ", "OÅ", "OÃ", "OÁ", "OÄ"],
    "Ơ": ["Ô", "ÔØ", "ÔÛ", "ÔÕ", "ÔÙ", "ÔÏ"],
    "U": ["U", "UØ", "UÛ", "UÕ", "UÙ", "UÏ"],
    "Ư": ["Ö", "ÖØ", "ÖÛ", "ÖÕ", "ÖÙ", "ÖÏ"],
    "Y": ["Y", "YØ", "YÛ", "YÕ", "YÙ", "Î"],
}
VNI_OTHERS = {"đ": "ñ", "Đ": "Ñ"}

# (Unicode, TCVN3, VNI)
KNOWN_WORDS = [
    ("Nguyễn Văn An", "NguyÔn V¨n An", "Nguyeãn Vaên An"),
    ("Đặng Thị Hường", "§Æng ThÞ H\xadêng", "Ñaëng Thò Höôøng"),
    ("Hồ Chí Minh", "Hå ChÝ Minh", "Hoà Chí Minh"),
    ("Thừa Thiên Huế", "Thõa Thiªn HuÕ", "Thöøa Thieân Hueá"),
    ("Bà Rịa – Vũng Tàu", "Bµ RÞa – Vòng Tµu", "Baø Ròa – Vuõng Taøu"),
    ("Quảng Ngãi", "Qu¶ng Ng·i", "Quaûng Ngaõi"),
]
# Samples from the test data and examples of published converters.
SECOND_SOURCE_SAMPLES: list[tuple[str, str, Encoding]] = [
    ("Xin chào các bạn", "Xin chµo c¸c b¹n", "tcvn3"),
    ("Xin chào các bạn", "Xin chaøo caùc baïn", "vni"),
    ("Tôi đi học", "T«i ®i häc", "tcvn3"),
    ("Tôi đi học", "Toâi ñi hoïc", "vni"),
    ("Bảo Thắng", "B¶o Th¾ng", "tcvn3"),
    ("Mường Khương", "M\xadêng Kh\xad¬ng", "tcvn3"),
    ("Bát Xát", "B¸t X¸t", "tcvn3"),
]

LOWER = VIETNAMESE_LETTERS[:67]
UPPER = VIETNAMESE_LETTERS[67:]
TCVN3_CAPITALS = "ĂÂÊÔƠƯĐ"
PUNCTUATION = string.punctuation + "–—“”‘’…"
TEXT_EXTRAS = string.ascii_letters + string.digits + " " + PUNCTUATION

any_text = st.text(alphabet=VIETNAMESE_LETTERS + TEXT_EXTRAS)
tcvn3_exact_text = st.text(alphabet=LOWER + TCVN3_CAPITALS + TEXT_EXTRAS)
ascii_text = st.text(alphabet=st.characters(max_codepoint=0x7F))


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def cp1252_bytes(legacy: str) -> bytes:
    return legacy.encode("cp1252")


# --- the alphabet and the tables ---------------------------------------------------


def test_alphabet_is_the_134_vietnamese_letters() -> None:
    assert len(VIETNAMESE_LETTERS) == len(set(VIETNAMESE_LETTERS)) == 134
    assert all(nfc(c) == c and not c.isascii() for c in VIETNAMESE_LETTERS)
    assert UPPER == LOWER.upper()
    table_letters = {c for row in UNICODE_ROWS.values() for c in row} | {"đ"}
    assert set(LOWER) == table_letters - set(string.ascii_lowercase)


def test_tcvn3_table_letter_by_letter() -> None:
    for base, letters in UNICODE_ROWS.items():
        for letter, legacy in zip(letters, TCVN3_ROWS[base], strict=True):
            assert encode(letter, "tcvn3") == legacy, letter
            assert decode(legacy, "tcvn3") == letter, letter
            assert encode_bytes(letter, "tcvn3") == cp1252_bytes(legacy)
            assert decode_bytes(cp1252_bytes(legacy), "tcvn3") == letter
    for letter, legacy in TCVN3_OTHERS.items():
        assert encode(letter, "tcvn3") == legacy
        assert decode(legacy, "tcvn3") == letter
    codes = [code for row in TCVN3_ROWS.values() for code in row] + list(TCVN3_OTHERS.values())
    assert len(set(codes)) == 12 * 6 + 8  # no two letters share a code


def test_vni_table_letter_by_letter() -> None:
    for base, forms in VNI_ROWS.items():
        letters = UNICODE_ROWS[base.lower()]
        if base.isupper():
            letters = letters.upper()
        for letter, legacy in zip(letters, forms, strict=True):
            assert encode(letter, "vni") == legacy, letter
            assert decode(legacy, "vni") == letter, letter
            assert decode_bytes(cp1252_bytes(legacy), "vni") == letter
    for letter, legacy in VNI_OTHERS.items():
        assert encode(letter, "vni") == legacy
        assert decode(legacy, "vni") == letter
    assert len({form for forms in VNI_ROWS.values() for form in forms}) == 24 * 6


def test_tcvn3_writes_toned_capitals_with_the_lowercase_code() -> None:
    for upper, lower in zip(UPPER, LOWER, strict=True):
        if upper in TCVN3_CAPITALS:
            assert encode(upper, "tcvn3") != encode(lower, "tcvn3")
            assert decode(encode(upper, "tcvn3"), "tcvn3") == upper
        else:
            assert encode(upper, "tcvn3") == encode(lower, "tcvn3"), upper
            assert decode(encode(upper, "tcvn3"), "tcvn3") == lower
    assert encode("NGUYỄN VĂN AN", "tcvn3") == "NGUYÔN V¡N AN"
    assert decode("NGUYÔN V¡N AN", "tcvn3") == "NGUYễN VĂN AN"
    assert tcvn3_fold("NGUYỄN VĂN AN") == "NGUYễN VĂN AN"
    assert tcvn3_fold("Ếch Ăn Ổi") == "ếch Ăn ổi"


def _iconv(data: bytes, source: str, target: str) -> bytes:
    result = subprocess.run(
        ["iconv", "-f", source, "-t", target], input=data, capture_output=True, check=True
    )
    return result.stdout


@pytest.fixture(scope="module")
def glibc_tcvn() -> None:
    if shutil.which("iconv") is None:
        pytest.skip("no iconv on this machine")
    try:
        _iconv("ễ".encode(), "UTF-8", "TCVN5712-1")
    except subprocess.CalledProcessError:
        pytest.skip("this iconv has no TCVN5712-1")


@pytest.mark.usefixtures("glibc_tcvn")
def test_tcvn3_agrees_with_glibc() -> None:
    """glibc's TCVN5712-1 is the standard's full table VN1; the 74 letters TCVN3 (VN3)
    has must have the same codes there."""
    letters = [c for c in VIETNAMESE_LETTERS if c in LOWER or c in TCVN3_CAPITALS]
    assert len(letters) == 74
    ours = b"".join(encode_bytes(c, "tcvn3") for c in letters)
    assert _iconv("".join(letters).encode(), "UTF-8", "TCVN5712-1") == ours
    assert _iconv(ours, "TCVN5712-1", "UTF-8").decode() == decode_bytes(ours, "tcvn3")


# --- known words and second sources ------------------------------------------------


@pytest.mark.parametrize(("text", "tcvn3", "vni"), KNOWN_WORDS)
def test_known_words(text: str, tcvn3: str, vni: str) -> None:
    assert encode(text, "tcvn3") == tcvn3
    assert encode(text, "vni") == vni
    assert decode(tcvn3, "tcvn3") == text
    assert decode(vni, "vni") == text
    assert encode_bytes(text, "tcvn3") == cp1252_bytes(tcvn3)
    assert encode_bytes(text, "vni") == cp1252_bytes(vni)
    assert decode_bytes(cp1252_bytes(tcvn3), "tcvn3") == text
    assert decode_bytes(cp1252_bytes(vni), "vni") == text


def test_en_dash_is_byte_0x96() -> None:
    assert encode_bytes("Bà Rịa – Vũng Tàu", "tcvn3") == b"B\xb5 R\xdea \x96 V\xf2ng T\xb5u"
    # The same bytes decoded as Latin-1 instead of cp1252 show a C1 control.
    assert decode("Bµ RÞa \x96 Vòng Tµu", "tcvn3") == "Bà Rịa – Vũng Tàu"
    assert decode("Baø Ròa \x96 Vuõng Taøu", "vni") == "Bà Rịa – Vũng Tàu"


@pytest.mark.parametrize(("text", "legacy", "encoding"), SECOND_SOURCE_SAMPLES)
def test_second_source_samples(text: str, legacy: str, encoding: Encoding) -> None:
    assert encode(text, encoding) == legacy
    assert decode(legacy, encoding) == text


# --- round trips ---------------------------------------------------------------------


@given(any_text)
@example("Nguyễn Văn An")
@example("ĐỖ THỊ HƯỜNG")
def test_vni_round_trip(text: str) -> None:
    assert decode(encode(text, "vni"), "vni") == nfc(text)
    assert decode_bytes(encode_bytes(text, "vni"), "vni") == nfc(text)


@given(tcvn3_exact_text)
@example("Đặng Thị Hường – Ăn Ơn Ưng Âm Ê Ô")
def test_tcvn3_round_trip_is_exact_for_what_it_represents(text: str) -> None:
    assert decode(encode(text, "tcvn3"), "tcvn3") == text
    assert decode_bytes(encode_bytes(text, "tcvn3"), "tcvn3") == text


@given(any_text)
@example("NGUYỄN VĂN AN")
def test_tcvn3_round_trip_folds_toned_capitals(text: str) -> None:
    folded = tcvn3_fold(text)
    assert decode(encode(text, "tcvn3"), "tcvn3") == folded
    assert encode(folded, "tcvn3") == encode(text, "tcvn3")
    assert all(c not in UPPER or c in TCVN3_CAPITALS for c in folded)
    assert folded.lower() == text.lower()


@given(any_text, st.sampled_from(ENCODINGS))
def test_nfd_input_encodes_like_nfc(text: str, encoding: Encoding) -> None:
    assert encode(nfd(text), encoding) == encode(nfc(text), encoding)
    assert encode_bytes(nfd(text), encoding) == encode_bytes(text, encoding)


@given(ascii_text, st.sampled_from(ENCODINGS))
def test_ascii_is_unchanged(text: str, encoding: Encoding) -> None:
    assert encode(text, encoding) == text
    assert decode(text, encoding) == text
    assert encode_bytes(text, encoding) == text.encode("ascii")
    assert decode_bytes(text.encode("ascii"), encoding) == text


@given(st.binary(), st.sampled_from(ENCODINGS))
def test_decode_takes_any_bytes_in_either_string_form(data: bytes, encoding: Encoding) -> None:
    result = decode_bytes(data, encoding)
    assert unicodedata.is_normalized("NFC", result)
    assert decode(data.decode("latin-1"), encoding) == result
    assert decode(data.decode("cp1252", errors="ignore"), encoding) == decode_bytes(
        data.translate(None, delete=b"\x81\x8d\x8f\x90\x9d"), encoding
    )


# Bytes TCVN3 gives a meaning to, and that encode writes.
TCVN3_BYTES = (
    bytes(range(0x80))
    + cp1252_bytes("‚ƒ„…†‡ˆ‰Š‹Œ‘’“”•–—˜™š›œŸ\xa0")
    + cp1252_bytes("".join(TCVN3_ROWS.values()) + "".join(TCVN3_OTHERS.values()))
)


@given(st.lists(st.sampled_from(TCVN3_BYTES)).map(bytes))
def test_tcvn3_bytes_round_trip(data: bytes) -> None:
    assert encode_bytes(decode_bytes(data, "tcvn3"), "tcvn3") == data


@given(st.text(), st.sampled_from(ENCODINGS))
def test_decode_never_fails_and_gives_nfc(text: str, encoding: Encoding) -> None:
    assert unicodedata.is_normalized("NFC", decode(text, encoding))


# --- decoding details ----------------------------------------------------------------


def test_vni_longest_match_first() -> None:
    assert decode("ô", "vni") == "ơ"
    assert decode("ôù", "vni") == "ớ"
    assert decode("oâ", "vni") == "ô"
    assert decode("oá", "vni") == "ố"
    assert decode("aê", "vni") == "ă"
    assert decode("aé", "vni") == "ắ"
    assert decode("öôø", "vni") == "ườ"
    assert decode("Höôøng", "vni") == "Hường"


def test_vni_leaves_stray_bytes_and_reads_mixed_case_leniently() -> None:
    assert decode("xù", "vni") == "xù"  # a tone byte after a consonant means nothing
    assert decode("uê", "vni") == "uê"  # nor does a breve after u
    assert decode("ôê", "vni") == "ơê"
    assert decode("©2024 ° «»", "vni") == "©2024 ° «»"
    assert decode("Aù", "vni") == decode("AÙ", "vni") == "Á"
    assert decode("aÙ", "vni") == "á"


def test_tcvn3_leaves_unassigned_bytes() -> None:
    # 0xB0 is "°" in cp1252 and unassigned in TCVN3 (VN1 puts a combining grave there).
    assert decode_bytes(b"25\xb0C", "tcvn3") == "25°C"
    assert decode("25°C", "tcvn3") == "25°C"


def test_decode_repairs_nfd_normalised_mojibake() -> None:
    assert decode(nfd("Nguyeãn"), "vni") == "Nguyễn"
    assert decode(nfd("NguyÔn"), "tcvn3") == "Nguyễn"


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("text", "char", "position"),
    [
        ("Giá 100€", "€", 7),
        ("Hà Nội 河内", "河", 7),
        ("Müller", "ü", 1),
        ("Straße", "ß", 4),
        ("naïve", "ï", 2),
        ("q\u0301", "\u0301", 1),  # a combining mark no Vietnamese letter takes
    ],
)
def test_encode_rejects_characters_without_a_legacy_form(
    encoding: Encoding, text: str, char: str, position: int
) -> None:
    with pytest.raises(LegacyEncodingError) as info:
        encode(text, encoding)
    assert isinstance(info.value, ValueError)
    assert (info.value.char, info.value.position, info.value.encoding) == (char, position, encoding)
    assert repr(char) in str(info.value)
    assert f"U+{ord(char):04X}" in str(info.value)
    assert f"position {position}" in str(info.value)
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
        encode_bytes(text, encoding)


def test_position_is_counted_in_the_nfc_text() -> None:
    with pytest.raises(LegacyEncodingError) as info:
        encode(nfd("Tiếng Việt €"), "vni")
    assert info.value.position == 11


def test_symbols_depend_on_the_encoding() -> None:
    # TCVN3 uses 0xA1-0xFE for letters: © is â there. VNI leaves 0xA1-0xBF alone.
    for char in "©°«»":
        with pytest.raises(LegacyEncodingError):
            encode(char, "tcvn3")
        assert encode(char, "vni") == char
        assert decode(char, "vni") == char
    for char in "“”‘’–—…•™\xa0":
        for encoding in ENCODINGS:
            assert encode(char, encoding) == char
            assert decode(char, encoding) == char
    # Code points that stand in for unassigned bytes are never written.
    for char in "\ufffe\x80\x81\x96":
        for encoding in ENCODINGS:
            with pytest.raises(LegacyEncodingError):
                encode(char, encoding)


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="unknown legacy Vietnamese encoding"):
        encode("abc", "viscii")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown legacy Vietnamese encoding"):
        decode("abc", "utf-8")  # type: ignore[arg-type]


# --- detection -------------------------------------------------------------------------

TCVN3_SAMPLES = [
    "NguyÔn V¨n An",
    "§Æng ThÞ H\xadêng",
    "ñy ban nh©n d©n tØnh Thõa Thiªn HuÕ",  # Ủ has no code: written as ủ
    "Céng hßa x· héi chñ nghÜa ViÖt Nam",
    "§éc lËp – Tù do – H¹nh phóc",
    "Bµ RÞa \x96 Vòng Tµu",
]
VNI_SAMPLES = [
    "Nguyeãn Vaên An",
    "Ñaëng Thò Höôøng",
    "UÛy ban nhaân daân tænh Thöøa Thieân Hueá",
    "Coäng hoøa xaõ hoäi chuû nghóa Vieät Nam",
    "Ñoäc laäp – Töï do – Haïnh phuùc",
    "Baùt Xaùt",
]
NOT_LEGACY = [
    "",
    "Hello, world 123",
    "Nguyễn Văn An",
    "Thừa Thiên Huế",
    "Cà Mau, Tây Ninh",  # Unicode Vietnamese that happens to be all Latin-1
    "Café au lait, crème brûlée",
    "Müller, Straße, Größe",
    "«Bonjour» à tous, ça va?",
    "Señor Muñoz, 25°C ±2 µm",
    "Hoà Chí Minh",  # VNI for "Hồ Chí Minh" and also Unicode "Hoà Chí Minh": ambiguous
]


@pytest.mark.parametrize("text", TCVN3_SAMPLES)
def test_looks_legacy_tcvn3(text: str) -> None:
    assert looks_legacy(text) == "tcvn3"


@pytest.mark.parametrize("text", VNI_SAMPLES)
def test_looks_legacy_vni(text: str) -> None:
    assert looks_legacy(text) == "vni"


@pytest.mark.parametrize("text", NOT_LEGACY)
def test_looks_legacy_none(text: str) -> None:
    assert looks_legacy(text) is None


@pytest.mark.parametrize(("text", "tcvn3", "vni"), KNOWN_WORDS)
def test_looks_legacy_never_names_the_wrong_encoding(text: str, tcvn3: str, vni: str) -> None:
    assert looks_legacy(text) is None
    assert looks_legacy(tcvn3) in ("tcvn3", None)
    assert looks_legacy(vni) in ("vni", None)


@given(any_text)
def test_looks_legacy_ignores_unicode_with_letters_beyond_latin1(text: str) -> None:
    if any(ord(c) > 0xFF for c in text if c in VIETNAMESE_LETTERS):
        assert looks_legacy(text) is None
