"""Kafka's JAAS configuration text, as `sasl.jaas.config` holds it (Kafka's JaasConfig).

One login module entry:  `<login module class> <flag> [<option>=<value> ...];`
where the flag is required, requisite, sufficient or optional and a value is a word or a double
quoted string (a backslash escapes the next character inside quotes). For example

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice";

Kafka allows exactly one entry in `sasl.jaas.config`; the broker's PLAIN users are the options
named `user_<name>` (PlainServerCallbackHandler), and OAUTHBEARER's unsecured validator reads its
settings from the options too.
"""

FLAGS = ("required", "requisite", "sufficient", "optional")


class JaasEntry:
    __slots__ = ("login_module", "flag", "options")

    def __init__(self, login_module: str, flag: str, options: dict[str, str]):
        self.login_module = login_module
        self.flag = flag
        self.options = options

    def __repr__(self) -> str:
        return f"JaasEntry({self.login_module} {self.flag} {sorted(self.options)})"


def _tokens(text: str):
    """(kind, value) with kind 'word', 'string', '=' or ';'."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "=;":
            yield c, c
            i += 1
        elif c == '"':
            out, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("JAAS config: unterminated quoted value")
            yield "string", "".join(out)
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '=;"':
                j += 1
            yield "word", text[i:j]
            i = j


def parse_jaas_config(text: str) -> JaasEntry:
    """The one login module entry of a `sasl.jaas.config` value; ValueError, worded as Kafka
    words it, when the text is not one."""
    tokens = list(_tokens(text))
    if not tokens:
        raise ValueError("JAAS config entry not terminated by semi-colon")
    pos = 0

    def take(kinds: tuple, what: str) -> str:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][0] not in kinds:
            found = tokens[pos][1] if pos < len(tokens) else "end of text"
            raise ValueError(f"JAAS config: expected {what}, found {found!r}")
        pos += 1
        return tokens[pos - 1][1]

    module = take(("word",), "a login module class name")
    flag = take(("word",), "a control flag")
    if flag.lower() not in FLAGS:
        raise ValueError(f"Invalid control flag: {flag}")
    options: dict[str, str] = {}
    while pos < len(tokens) and tokens[pos][0] != ";":
        name = take(("word",), "an option name")
        take(("=",), f"'=' after option {name}")
        options[name] = take(("word", "string"), f"a value for option {name}")
    if pos >= len(tokens):
        raise ValueError("JAAS config entry not terminated by semi-colon")
    pos += 1
    if pos != len(tokens):
        raise ValueError("JAAS config property contains 2 login modules, should contain 1: "
                         "sasl.jaas.config accepts one login module entry")
    return JaasEntry(module, flag.lower(), options)
