#!/usr/bin/env python3
"""Build the prompt set for the EAGLE-3 draft-head training corpus.

Writes JSONL, one prompt a line: {"id", "category", "source", "user"}.
Standard library only, deterministic (fixed seed, sorted file lists, no set
iteration), built from material installed on this machine:

  Python standard library sources  (sysconfig.get_paths()["stdlib"], *.py;
                                    tests, idlelib, site-packages skipped)
      -> code-completion from public function names + docstrings,
         code-editing / code-explanation excerpts (whole functions/classes,
         20-60 lines), prose from long module docstrings
  C / C++ headers under /usr/include
      -> glibc declarations with their comment (string.h, stdlib.h, ...)
         for code-completion; libstdc++ bits/*.h function bodies for
         code-editing / code-explanation
  C / C++ example and library sources shipped as docs
      (/usr/share/doc/*/examples/*.c, /usr/src/googletest/**/*.cc)
  JavaScript: npm's own sources (/usr/lib/node_modules/npm/lib/**/*.js)
  Shell: sh/bash scripts in /usr/bin, /usr/sbin, /usr/lib/git-core,
      /etc/init.d and /usr/share/bash-completion/completions
  Prose: man pages (/usr/share/man/man{1,5,7,8}/*.gz, roff stripped here),
      READMEs and text docs under /usr/share/doc (plain or .gz), license
      texts under /usr/share/common-licenses
  Chat and free-writing prose: templates x topic lists written in this file.

Exclusions:
  * nothing from wikitext or anything under /work/shared/data;
  * no prompt shares a task with the evaluation prompts
    (bench/spec/prompts.jsonl): their identifiers (merge_intervals, ring_push,
    groupBy, LRUCache, pt_dist2, ...) and topics (lighthouse, Gutenberg,
    Silk Road, git rebase, basil, ...) are blocked as whole words, and any
    prompt sharing an 8-word run with an evaluation prompt is dropped.

Usage: make_prompts.py [--out PATH] [--eval PATH] [--seed N]
"""

import argparse
import ast
import gzip
import json
import os
import re
import random
import sys
import sysconfig
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_EVAL = os.path.join(REPO, "bench", "spec", "prompts.jsonl")
DEFAULT_OUT = os.path.expanduser("~/.cache/kestrel/eagle3/prompts.jsonl")

# Target counts per category (before exclusion; a few may drop out).
TARGETS = {
    "code-completion": 200,
    "code-editing": 260,
    "code-explanation": 130,
    "prose": 150,
    "chat": 140,
}

MAX_EXCERPT_CHARS = 2400  # keeps prompts well under ~900 tokens
MIN_LINES, MAX_LINES = 20, 60

# ---------------------------------------------------------------------------
# evaluation-set exclusion

# Topics and names of the evaluation prompts, blocked as whole words/phrases
# (case-insensitive). Identifiers are also pulled from the eval file itself.
EVAL_CODE_BLOCK = [  # checked against the whole prompt, code included
    "merge_intervals", "merge intervals", "ring buffer", "ringbuffer", "circular buffer", "ring_push",
    "debounce", "debouncing", "lru", "lrucache", "lru_cache", "least recently used",
    "count_words", "word count", "count the words", "groupby", "group_by", "reverse an array",
    "reverse the array", "class inventory", "pt_dist2", "array.prototype.map",
]
EVAL_TOPIC_BLOCK = [  # checked against the prompt with fenced code removed
    "lighthouse", "message in a bottle", "printing press", "gutenberg", "along rivers", "cities grow",
    "fruit market", "open-air market", "silk road", "astronaut", "in orbit",
    "fall asleep", "fall back asleep", "waking up", "insomnia", "sleep better", "inflation",
    "prices go up", "spanish", "learn a language", "git rebase", "rebase", "basil", "yellow leaves",
    "job interview", "interview prep", "data analyst",
]


def load_eval(path):
    prompts = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    prompts.append(json.loads(line))
    return prompts


def eval_identifiers(prompts):
    """Distinctive identifiers named in the eval prompts (snake_case / camelCase, >= 6 chars)."""
    found = []
    for p in prompts:
        # only the instruction (text before any code fence) names the task
        instr = p["user"].split("```")[0]
        for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", instr):
            distinctive = "_" in w.strip("_") or re.search(r"[a-z][A-Z]", w)
            generic = w in ("JavaScript", "TypeScript", "CommonJS", "NodeJS") or w.endswith("_t")
            if len(w) >= 6 and distinctive and not generic and w not in found:
                found.append(w)
    return found


def shingles(text, n=8):
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(0, len(words) - n + 1))}


def word_re(terms):
    return re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(t) for t in terms) + r")(?![A-Za-z0-9_])",
                      re.IGNORECASE)


class Excluder:
    def __init__(self, eval_prompts):
        self.code_re = word_re(list(EVAL_CODE_BLOCK) + [w.lower() for w in eval_identifiers(eval_prompts)])
        self.topic_re = word_re(EVAL_TOPIC_BLOCK)
        self.eval_shingles = set()
        for p in eval_prompts:
            self.eval_shingles |= shingles(p["user"])

    def blocked(self, text):
        m = self.code_re.search(text)
        if m:
            return "term:" + m.group(1).lower()
        m = self.topic_re.search(re.sub(r"```.*?```", " ", text, flags=re.S))
        if m:
            return "topic:" + m.group(1).lower()
        if shingles(text) & self.eval_shingles:
            return "shingle"
        return None


# ---------------------------------------------------------------------------
# small helpers

def read_text(path, limit=400_000):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except (OSError, EOFError):
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def walk_sorted(root, exts=None, skip_dirs=()):
    out = []
    if not os.path.isdir(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for fn in sorted(filenames):
            if exts is None or fn.endswith(exts):
                p = os.path.join(dirpath, fn)
                if os.path.isfile(p) and not os.path.islink(p):
                    out.append(p)
    return sorted(out)


def fence(lang, code):
    return "```" + lang + "\n" + code.rstrip("\n") + "\n```"


def ok_excerpt(code):
    lines = code.rstrip("\n").split("\n")
    if not (MIN_LINES <= len(lines) <= MAX_LINES) or len(code) > MAX_EXCERPT_CHARS:
        return False
    if any(len(l) > 160 for l in lines):
        return False
    nonblank = [l for l in lines if l.strip()]
    comment = [l for l in nonblank if l.strip().startswith(("#", "//", "/*", "*", "'''", '"""'))]
    return len(nonblank) >= 15 and len(comment) <= 0.5 * len(nonblank)


def one_line(text):
    return re.sub(r"\s+", " ", text).strip()


def camel(name):
    parts = [p for p in name.split("_") if p]
    if not parts:
        return name
    return parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:])


# ---------------------------------------------------------------------------
# Python standard library

PY_SKIP_DIRS = ("test", "tests", "idlelib", "site-packages", "__pycache__", "lib2to3", "turtledemo",
                "tkinter", "ensurepip", "config-3.11-x86_64-linux-gnu", "distutils")


def python_sources():
    root = sysconfig.get_paths()["stdlib"]
    files = walk_sorted(root, (".py",), PY_SKIP_DIRS)
    return [f for f in files if "/test" not in f[len(root):] and not os.path.basename(f).startswith("test_")]


def python_items(files):
    """(functions with docstrings, code excerpts, module docstrings) from the stdlib."""
    funcs, excerpts, moddocs = [], [], []
    root = sysconfig.get_paths()["stdlib"]
    for path in files:
        src = read_text(path)
        if src is None:
            continue
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError):
            continue
        rel = os.path.relpath(path, root)
        modname = rel[:-3].replace(os.sep, ".").replace(".__init__", "")
        lines = src.split("\n")
        mdoc = ast.get_docstring(tree)
        if mdoc and 400 <= len(mdoc) <= MAX_EXCERPT_CHARS and mdoc.count("\n") >= 6:
            moddocs.append({"src": "py:" + rel, "text": mdoc, "module": modname})

        def visit(body, cls=None):
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    code = textwrap.dedent("\n".join(lines[start - 1:node.end_lineno]))
                    if ok_excerpt(code):
                        excerpts.append({"lang": "python", "src": f"py:{rel}:{node.name}", "code": code,
                                         "name": node.name, "kind": "class" if isinstance(node, ast.ClassDef)
                                         else "function", "node": node})
                    if isinstance(node, ast.ClassDef):
                        visit(node.body, node.name)
                    else:
                        doc = ast.get_docstring(node)
                        if doc and not node.name.startswith("_"):
                            first = doc.strip().split("\n\n")[0]
                            first = one_line(first)
                            trivial = re.match(r"(Internal|Deprecated|Override|Overridable|Helper|Private|"
                                               r"Undocumented|Hook|XXX|TODO|Same as|See |Alias|Wrapper)", first)
                            if 25 <= len(first) <= 320 and ">>>" not in first and not trivial:
                                a = node.args
                                params = [x.arg for x in a.posonlyargs + a.args]
                                if cls and params and params[0] in ("self", "cls"):
                                    params = params[1:]
                                if a.vararg:
                                    params.append("*" + a.vararg.arg)
                                params += [x.arg for x in a.kwonlyargs]
                                if a.kwarg:
                                    params.append("**" + a.kwarg.arg)
                                funcs.append({"src": f"py:{rel}:{node.name}", "module": modname, "cls": cls,
                                              "name": node.name, "params": params, "doc": first})

        visit(tree.body)
    return funcs, excerpts, moddocs


def local_names(fn_node):
    """Local variable names assigned inside a function, in order of first appearance."""
    names = []
    args = set()
    if isinstance(fn_node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = fn_node.args
        args = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    for n in ast.walk(fn_node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            if n.id not in names and n.id not in args and n.id != "_":
                names.append(n.id)
    return sorted(names, key=lambda x: (len(x), x))


RENAME_MAP = {
    "s": "text", "n": "count", "i": "index", "j": "inner_index", "k": "key", "v": "value", "d": "mapping",
    "f": "fileobj", "p": "path", "res": "result", "ret": "result", "rv": "result", "tmp": "temp_value",
    "buf": "buffer", "l": "items", "lst": "values", "c": "char", "ch": "char", "m": "match", "x": "item",
    "e": "exc", "fp": "file_handle", "fn": "filename", "cnt": "counter", "idx": "position", "pos": "position",
    "val": "value", "line": "current_line", "data": "payload", "name": "item_name", "path": "file_path",
    "args": "arguments", "msg": "message", "err": "error", "t": "token", "r": "reader", "w": "writer",
    "a": "first", "b": "second", "start": "start_index", "end": "end_index", "result": "output",
}


# ---------------------------------------------------------------------------
# brace-language and shell excerpts

BLOCK_KEYWORDS = ("if", "for", "while", "switch", "else", "do", "try", "catch", "namespace", "extern",
                  "case", "return", "struct", "enum", "union", "class", "typedef", "elif", "then")


def brace_blocks(text, lang):
    """Whole function bodies (signature + body, with a comment just above) from C/C++/JS/shell text."""
    lines = text.split("\n")
    out = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        s = line.strip()
        indent = len(line) - len(line.lstrip())
        is_head = False
        if lang == "shell":
            is_head = bool(re.match(r"^(function\s+)?[A-Za-z_][\w:.-]*\s*\(\)\s*\{?\s*$", s)) or \
                bool(re.match(r"^function\s+[A-Za-z_][\w:.-]*\s*\{?\s*$", s))
            if is_head and not s.endswith("{") and i + 1 < n and lines[i + 1].strip() == "{":
                i += 1
        elif s.endswith("{") or s == "{":
            sig = s if s != "{" else (lines[i - 1].strip() if i > 0 else "")
            first_word = re.match(r"[A-Za-z_]*", sig).group(0)
            if first_word not in BLOCK_KEYWORDS and ")" in sig and "=" not in sig.split("(")[0] \
                    and not sig.startswith(("}", "#", "//", "*")):
                is_head = True
                if lang == "js" and sig.startswith(("if", "for", "while", "switch", "catch")):
                    is_head = False
        if not is_head:
            i += 1
            continue
        # find the closing brace at the same indentation
        j = i + 1
        close = None
        while j < n and j - i <= MAX_LINES + 5:
            lj = lines[j]
            if lj.strip().startswith("}") and len(lj) - len(lj.lstrip()) == indent:
                close = j
                break
            j += 1
        if close is None:
            i += 1
            continue
        # walk back over the signature and a directly preceding comment
        start = i
        while start > 0 and lines[start - 1].strip() and not lines[start - 1].strip().endswith((";", "}", "*/", "{")) \
                and not lines[start - 1].lstrip().startswith(("#", "//")) and i - start < 4:
            start -= 1
        c = start
        while c > 0 and lines[c - 1].strip().startswith(("/*", "*", "//", "#")) and \
                not lines[c - 1].strip().startswith(("#include", "#define", "#if", "#endif", "#else", "#!")) \
                and start - c < 12:
            c -= 1
        if c < start and not lines[c].strip().startswith(("/*", "//", "#")):
            c = start  # only part of a long comment: leave it out
        code = textwrap.dedent("\n".join(lines[c:close + 1]))
        if ok_excerpt(code):
            out.append(code)
            i = close + 1
        else:
            i += 1
    return out


def paragraph_chunks(text, lo=MIN_LINES, hi=MAX_LINES):
    """Runs of blank-line separated paragraphs, lo..hi lines long (for scripts without functions)."""
    paras, cur = [], []
    for line in text.split("\n"):
        if line.strip() == "" and cur:
            paras.append(cur)
            cur = []
        elif line.strip() or cur:
            cur.append(line)
    if cur:
        paras.append(cur)
    chunks, acc = [], []
    for p in paras:
        boiler = re.search(r"Copyright|WARRANTY|License|LICENSE", "\n".join(p))
        if acc and (boiler or len(acc) + 1 + len(p) > hi):
            if len(acc) >= lo:
                chunks.append("\n".join(acc))
            acc = []
        if boiler:  # licence / copyright boilerplate is not code: it separates chunks
            continue
        acc = acc + ([""] if acc else []) + p
    if len(acc) >= lo:
        chunks.append("\n".join(acc))
    return [c for c in chunks if balanced_quotes(c)]


def balanced_quotes(code):
    """Rough check that a chunk does not start or end inside a quoted string."""
    body = "\n".join(l for l in code.split("\n") if not l.lstrip().startswith(("#", "//", "*")))
    body = re.sub(r"\\.", "", body)
    return body.count("'") % 2 == 0 and body.count('"') % 2 == 0 and body.count("`") % 2 == 0


def c_sources():
    files = []
    for p in walk_sorted("/usr/share/doc", (".c",)):
        files.append(p)
    for p in walk_sorted("/usr/src/googletest", (".cc",)):
        if not p.endswith("-all.cc"):
            files.append(p)
    return files


def cpp_headers():
    root = "/usr/include/c++"
    if not os.path.isdir(root):
        return []
    vers = sorted(os.listdir(root))
    if not vers:
        return []
    return walk_sorted(os.path.join(root, vers[-1], "bits"), (".h", ".tcc"))


def js_sources():
    return walk_sorted("/usr/lib/node_modules/npm/lib", (".js",))


def is_shell_script(path):
    try:
        with open(path, "rb") as f:
            head = f.read(80)
    except OSError:
        return False
    first = head.split(b"\n")[0]
    return bool(re.match(rb"^#!\s*/(usr/)?bin/(env\s+)?(ba|da)?sh\b", first))


def shell_sources():
    files = []
    for d in ("/usr/bin", "/usr/sbin", "/usr/lib/git-core", "/etc/init.d"):
        if os.path.isdir(d):
            for fn in sorted(os.listdir(d)):
                p = os.path.join(d, fn)
                if os.path.isfile(p) and not os.path.islink(p) and is_shell_script(p):
                    files.append(p)
    files += walk_sorted("/usr/share/bash-completion/completions")
    return files


def code_excerpts(rng):
    """Excerpts by language: {"lang", "src", "code"}."""
    out = {"c": [], "cpp": [], "js": [], "shell": []}
    for p in c_sources():
        t = read_text(p)
        if t:
            lang = "cpp" if p.endswith(".cc") else "c"
            for code in brace_blocks(t, "c"):
                out[lang].append({"lang": lang, "src": p, "code": code})
    for p in cpp_headers():
        t = read_text(p)
        if t:
            for code in brace_blocks(t, "cpp"):
                out["cpp"].append({"lang": "cpp", "src": p, "code": code})
    for p in js_sources():
        t = read_text(p)
        if t:
            blocks = brace_blocks(t, "js")
            if not blocks:
                blocks = [c for c in paragraph_chunks(t) if ok_excerpt(c)][:1]
            for code in blocks:
                out["js"].append({"lang": "js", "src": p, "code": code})
    for p in shell_sources():
        t = read_text(p)
        if not t:
            continue
        blocks = brace_blocks(t, "shell")
        if not blocks:
            body = t.split("\n", 1)[1] if t.startswith("#!") else t
            blocks = [c for c in paragraph_chunks(body) if ok_excerpt(c)][:2]
        for code in blocks:
            out["shell"].append({"lang": "shell", "src": p, "code": code})
    return out


# ---------------------------------------------------------------------------
# glibc declarations for C completion

GLIBC_HEADERS = ["string.h", "stdlib.h", "ctype.h", "wchar.h", "stdio.h", "math.h", "unistd.h",
                 "strings.h", "time.h", "search.h", "fnmatch.h", "libgen.h", "inttypes.h", "wctype.h",
                 "argz.h", "envz.h"]


def clean_decl(decl):
    decl = re.sub(r"\b__(THROW|wur|attribute_pure__|attribute_const__|attribute_malloc__|"
                  r"attribute_deprecated__|attribute_warn_unused_result__|nonnull|attr_dealloc\w*|"
                  r"attr_access|attribute_format_strfmon__|attribute_alloc_size__|attribute_alloc_align__|"
                  r"attribute_nonnull__|attr_dealloc_free|fortify_function|THROWNL|REDIRECT\w*|"
                  r"attribute_returns_twice__|wur)\b\s*(\(\([^;]*?\)\))?", "", decl)
    decl = re.sub(r"\b__restrict\b", "", decl)
    decl = re.sub(r"\b__(?=[a-z])", "", decl)  # __s -> s
    decl = decl.replace("extern ", "")
    decl = re.sub(r"\s+", " ", decl).strip().rstrip(";").strip()
    decl = re.sub(r"\(\s+", "(", decl)
    decl = re.sub(r"\s+\)", ")", decl)
    decl = re.sub(r"\s+,", ",", decl)
    decl = re.sub(r"\s+\(", "(", decl, count=1)
    return decl + ";"


def glibc_decls():
    out = []
    for h in GLIBC_HEADERS:
        p = os.path.join("/usr/include", h)
        t = read_text(p)
        if not t:
            continue
        for m in re.finditer(r"/\*((?:(?!\*/).){15,300}?)\*/\s*\n\s*(extern\s+[^;{#]*?\b(\w+)\s*\([^;{#]*?\)[^;{#]*;)",
                             t, re.S):
            comment = one_line(m.group(1))
            name = m.group(3)
            if name.startswith("_") or "__" in name or "Copyright" in comment or "GNU" in comment:
                continue
            decl = clean_decl(m.group(2))
            if "(" not in decl or len(decl) > 200 or "__" in decl:
                continue
            out.append({"src": f"{p}:{name}", "name": name, "decl": decl, "doc": comment, "header": h})
    # one entry per function name
    seen, uniq = [], []
    for d in out:
        if d["name"] not in seen:
            seen.append(d["name"])
            uniq.append(d)
    return uniq


# ---------------------------------------------------------------------------
# prose sources

def roff_to_text(src):
    out = []
    for raw in src.split("\n"):
        line = raw
        if line.startswith(('.\\"', "'\\\"", '.\\}', ".ig")):
            continue
        if line.startswith((".", "'")):
            m = re.match(r"^[.'](\w+)\s*(.*)$", line)
            if not m:
                continue
            req, rest = m.group(1), m.group(2)
            if req in ("SH", "SS"):
                out.append("")
                out.append(rest.strip('"').upper() if req == "SH" else rest.strip('"'))
            elif req in ("B", "I", "SM", "SB"):
                out.append(rest.replace('"', ""))
            elif req in ("BR", "BI", "IR", "IB", "RB", "RI"):
                out.append("".join(re.findall(r'"([^"]*)"|(\S+)', rest) and
                                   [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', rest)]))
            elif req in ("PP", "P", "LP", "sp", "br", "TP", "IP", "HP", "RS", "RE"):
                if req == "IP" and rest:
                    out.append("")
                    out.append(re.findall(r'"([^"]*)"|(\S+)', rest)[0][0] or rest.split()[0])
                else:
                    out.append("")
            elif req in ("UR", "MT"):
                out.append(rest)
            continue
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r"\\f[BIRPC]|\\f\(..|\\f\[[^\]]*\]", "", text)
    text = text.replace("\\-", "-").replace("\\(em", "--").replace("\\(en", "-").replace("\\(aq", "'")
    text = text.replace("\\(lq", '"').replace("\\(rq", '"').replace("\\(bu", "*").replace("\\&", "")
    text = text.replace("\\e", "\\").replace("\\ ", " ").replace("\\(co", "(c)").replace("\\|", "")
    text = re.sub(r"\\\(\w\w", "", text)
    text = re.sub(r"\\\*\(?\w+", "", text)
    text = re.sub(r"\\[sv]-?\d", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def man_excerpts():
    out = []
    for sec in ("man1", "man5", "man7", "man8"):
        for p in walk_sorted(os.path.join("/usr/share/man", sec), (".gz",)):
            t = read_text(p, 200_000)
            if not t or ".so " in t[:200] or len(t) < 3000:
                continue
            text = roff_to_text(t)
            m = re.search(r"\nDESCRIPTION\n(.*?)(\n[A-Z][A-Z ]{2,}\n|$)", "\n" + text, re.S)
            if not m:
                continue
            desc = m.group(1).strip()
            paras = [pp for pp in re.split(r"\n\s*\n", desc) if pp.strip()]
            acc = ""
            for pp in paras:
                if len(acc) + len(pp) > 2000:
                    break
                acc += (("\n\n" if acc else "") + one_line(pp))
            if 600 <= len(acc) <= MAX_EXCERPT_CHARS and "\\" not in acc:
                name = re.sub(r"\.(\w+)$", r"(\1)", os.path.basename(p)[:-3])
                out.append({"src": p, "title": name, "text": acc, "kind": "man page"})
    return out


def doc_excerpts():
    out = []
    per_pkg = {}
    for p in walk_sorted("/usr/share/doc"):
        if "/RelNotes/" in p or per_pkg.get(p.split("/")[4], 0) >= 2:
            continue
        base = os.path.basename(p)
        b = base[:-3] if base.endswith(".gz") else base
        if not (b.startswith(("README", "NEWS", "FAQ", "TODO", "THANKS", "HACKING")) or b.endswith((".md", ".txt", ".rst"))):
            continue
        if b.startswith(("NEWS", "THANKS", "TODO")) or "changelog" in b.lower() or "copyright" in b.lower():
            continue
        t = read_text(p, 120_000)
        if not t or len(t) < 800:
            continue
        paras = [pp.strip() for pp in re.split(r"\n\s*\n", t) if pp.strip()]
        acc = ""
        for pp in paras:
            if len(acc) + len(pp) > 2000:
                if len(acc) >= 700:
                    break
                acc = ""
                continue
            acc += ("\n\n" if acc else "") + pp
        if 700 <= len(acc) <= MAX_EXCERPT_CHARS:
            pkg = p.split("/")[4]
            per_pkg[pkg] = per_pkg.get(pkg, 0) + 1
            out.append({"src": p, "title": f"{pkg} ({b})", "text": acc, "kind": "documentation"})
    return out


def license_excerpts():
    out = []
    for p in walk_sorted("/usr/share/common-licenses"):
        t = read_text(p)
        if not t:
            continue
        paras = [pp.strip() for pp in re.split(r"\n\s*\n", t) if pp.strip()]
        acc, k = "", 0
        for pp in paras:
            if len(acc) + len(pp) > 1800:
                if len(acc) >= 600:
                    out.append({"src": f"{p}#{k}", "title": os.path.basename(p), "text": acc, "kind": "license"})
                    k += 1
                acc = ""
                if len(pp) > 1800:
                    continue
            acc += ("\n\n" if acc else "") + pp
        if len(acc) >= 600:
            out.append({"src": f"{p}#{k}", "title": os.path.basename(p), "text": acc, "kind": "license"})
    return out


# ---------------------------------------------------------------------------
# prompt builders

LANG_TAG = {"python": "python", "c": "c", "cpp": "cpp", "js": "javascript", "shell": "bash"}
LANG_NAME = {"python": "Python", "c": "C", "cpp": "C++", "js": "JavaScript", "shell": "shell"}


def completion_prompts(rng, funcs, decls, n):
    out = []
    py_templates = [
        "Write a Python function `{name}({params})` that does the following: {doc}",
        "Implement `{name}({params})` in Python. Its docstring reads: \"{doc}\" Include the docstring and a couple of example calls.",
        "Write a Python function named {name} with parameters ({params}). Specification: {doc} Keep it self-contained.",
        "I need a Python helper `{name}({params})`. What it should do: {doc} Please write it with type hints.",
        "Write `{name}({params})` in Python from scratch (do not import the standard library module that already has it). Behaviour: {doc}",
    ]
    method_templates = [
        "Write a method `{name}({params})` for a Python class `{cls}`. It should: {doc} Show the method inside a minimal class definition.",
        "In a Python class `{cls}`, implement the method `{name}(self{comma}{params})`. Docstring: \"{doc}\"",
    ]
    other_langs = ["JavaScript", "TypeScript", "Go", "Rust", "C++", "Java", "C#"]
    x_templates = [
        "Write a {lang} function `{cname}` that mirrors Python's `{module}.{name}`: {doc}",
        "Port the idea of Python's `{module}.{name}({params})` to {lang}. The function should: {doc} Include a short usage example.",
    ]
    c_templates = [
        "Write your own C implementation of `{decl}`, named `my_{name}`. What it does: {doc} Do not call the library version; add a small main() that tests it.",
        "Implement the C standard library function `{name}` yourself, with the prototype `{decl}` (call it `my_{name}`). It should: {doc}",
        "Write `{decl}` in portable C without using <{header}> helpers (rename it `my_{name}`). Description: {doc} Explain any edge cases in comments.",
    ]
    top = [f for f in funcs if not f["cls"]]
    meth = [f for f in funcs if f["cls"]]
    rng.shuffle(top)
    rng.shuffle(meth)
    # about one method prompt for every three top-level function prompts
    fs = []
    while top or meth:
        fs.extend(top[:3])
        top = top[3:]
        fs.extend(meth[:1])
        meth = meth[1:]
    ds = list(decls)
    rng.shuffle(ds)
    n_c = min(len(ds), n // 5)
    n_x = n // 5
    n_py = n - n_c - n_x
    used = []
    for f in fs:
        if len(out) >= n_py:
            break
        key = f["name"]
        if key in used or f["name"] in ("main",):
            continue
        used.append(key)
        params = ", ".join(f["params"])
        doc = f["doc"] if f["doc"].endswith((".", "!", "?")) else f["doc"] + "."
        if f["cls"]:
            t = rng.choice(method_templates)
            user = t.format(name=f["name"], params=params, cls=f["cls"], doc=doc, comma=", " if params else "")
        else:
            user = rng.choice(py_templates).format(name=f["name"], params=params, doc=doc)
        out.append(("py", f["src"], user))
    k = 0
    for f in fs:
        if k >= n_x:
            break
        if f["cls"] or f["name"] in used:
            continue
        used.append(f["name"])
        doc = f["doc"] if f["doc"].endswith((".", "!", "?")) else f["doc"] + "."
        lang = other_langs[k % len(other_langs)]
        cname = camel(f["name"]) if lang in ("JavaScript", "TypeScript", "Java", "C#") else \
            (f["name"][:1].upper() + camel(f["name"])[1:] if lang == "Go" else f["name"])
        user = rng.choice(x_templates).format(lang=lang, cname=cname, module=f["module"], name=f["name"],
                                              params=", ".join(f["params"]), doc=doc)
        out.append(("x", f["src"], user))
        k += 1
    for d in ds[:n_c]:
        doc = d["doc"] if d["doc"].endswith((".", "!", "?")) else d["doc"] + "."
        user = rng.choice(c_templates).format(decl=d["decl"], name=d["name"], doc=doc, header=d["header"])
        out.append(("c", d["src"], user))
    return out


EDIT_TASKS = {
    "python": [
        ("Add type hints to every parameter and return value in this code. Change nothing else and return the whole code.", None),
        ("Add a concise docstring to every function, method and class in this code that lacks one. Do not change any code; return the whole code.", None),
        ("Add a short comment above each non-obvious step of this code explaining what it does. Keep the code unchanged and return all of it.", None),
        ("Add input validation and error handling to this code: raise clear exceptions with helpful messages for invalid arguments. Return the complete updated code.", None),
        ("Rewrite all string formatting in this code to use f-strings where possible, keeping behaviour identical. Return the full code.", None),
        ("Rename the variable `{old}` to `{new}` everywhere in this code and return the whole code.", "rename"),
        ("Convert this Python code to JavaScript (Node.js), keeping the structure and names as close as possible.", None),
        ("Translate this Python code to Go, keeping the same function names (exported where sensible) and logic.", None),
        ("Rewrite this Python code in Rust, keeping the structure and naming close to the original.", None),
        ("Port this Python code to C++17. Keep the same structure and comment anything that has no direct equivalent.", None),
        ("Refactor this code for readability: split long expressions, use descriptive names and early returns, but keep the behaviour identical. Return the full code.", None),
        ("Add logging with the standard `logging` module at the important steps of this code (debug level for details, warning for unusual cases). Return the full code.", None),
    ],
    "c": [
        ("Add a comment above each block of this C code explaining what it does. Do not change the code; return all of it.", None),
        ("Add error checking to this C code: check every return value that can signal failure and handle it cleanly. Return the whole updated code.", None),
        ("Rename the function `{old}` to `{new}` and update every use in this code. Return the whole code.", "crename"),
        ("Convert this C code to Rust, keeping the same logic and naming where possible.", None),
        ("Translate this C code to Python, preserving the structure and the names of functions.", None),
        ("Rewrite this C code as modern C++ (C++17): use RAII, std::string/std::vector where it fits, and keep the behaviour. Return the full code.", None),
        ("Reformat this C code in a consistent K&R style with 4-space indentation and braces on every if/else/loop body. Return the whole code.", None),
        ("Add Doxygen comments (brief, params, return value) to every function in this code. Return the complete code.", None),
    ],
    "cpp": [
        ("Add a comment above each block of this C++ code explaining what it does. Do not change the code; return all of it.", None),
        ("Add Doxygen comments (brief, template parameters, params, return value) to this C++ code. Return the complete code.", None),
        ("Simplify this C++ code using C++20 features where they make it clearer (concepts, ranges, structured bindings, etc.), keeping the behaviour. Return the full code.", None),
        ("Translate this C++ code to Rust, keeping the structure and names close to the original.", None),
        ("Rewrite this C++ code in Python, keeping the same structure and names.", None),
        ("Rename the function `{old}` to `{new}` everywhere in this code and return the whole code.", "crename"),
    ],
    "js": [
        ("Convert this JavaScript code to TypeScript: add type annotations and interfaces where useful, keep the logic identical. Return the whole code.", None),
        ("Add JSDoc comments to every function in this JavaScript code. Do not change the code itself; return all of it.", None),
        ("Add error handling to this JavaScript code: validate inputs and wrap risky calls so failures produce clear error messages. Return the complete code.", None),
        ("Rewrite this JavaScript code in Python, keeping function names (in snake_case) and structure.", None),
        ("Add explanatory inline comments to this JavaScript code without changing it, and return the whole code.", None),
        ("Rename the identifier `{old}` to `{new}` throughout this code and return the full code.", "jrename"),
        ("Convert this code to use ES module syntax (import/export) instead of CommonJS require/module.exports, changing nothing else. Return the full code.", None),
    ],
    "shell": [
        ("Make this shell code more robust: quote every variable expansion, use `[[ ]]` for tests where it is bash, and add error messages on failure. Return the whole code.", None),
        ("Add a comment above each step of this shell code explaining what it does. Do not change the code; return all of it.", None),
        ("Convert this shell code to an equivalent Python 3 script using subprocess and pathlib where needed.", None),
        ("Rewrite this shell code so it passes shellcheck cleanly, changing as little as possible. Return the full code.", None),
        ("Rename the function `{old}` to `{new}` throughout this shell code and return it in full.", "shrename"),
    ],
}

EXPLAIN_TASKS = [
    "Explain what this {lname} code does.",
    "Walk me through this {lname} code step by step.",
    "What is the purpose of this {lname} code, and how does it work?",
    "Explain this {lname} code to someone who is new to {lname}, covering each part briefly.",
    "Are there any bugs, edge cases or unsafe assumptions in this {lname} code? Explain.",
    "Summarize what this {lname} code does in a few sentences, then describe its inputs and outputs.",
    "What is the time and space complexity of this {lname} code? Explain your reasoning.",
    "Explain the control flow of this {lname} code, including what happens on errors.",
]


def rename_target(ex):
    """(old, new) identifier to rename in an excerpt, or None."""
    lang, code = ex["lang"], ex["code"]
    if lang == "python":
        node = ex.get("node")
        if node is None:
            return None
        for name in local_names(node):
            if name in RENAME_MAP and re.search(r"\b" + re.escape(name) + r"\b", code):
                return name, RENAME_MAP[name]
        for name in local_names(node):
            if len(name) >= 3 and "_" in name:
                return name, camel(name)
        return None
    if lang in ("c", "cpp"):
        m = re.search(r"\b([a-z_][a-z0-9_]{2,})\s*\(", code)
        for m in re.finditer(r"^[^\s#/*].*?\b([A-Za-z_]\w{2,})\s*\(", code, re.M):
            name = m.group(1)
            if name not in ("if", "for", "while", "switch", "return", "sizeof", "main", "operator"):
                return name, ("do_" + name) if "_" in name else camel("new_" + name)
        return None
    if lang == "js":
        m = re.search(r"\b(?:function\s+|async\s+function\s+)([A-Za-z_$][\w$]{2,})", code) or \
            re.search(r"^\s*(?:async\s+)?(?:static\s+)?([A-Za-z_$][\w$]{2,})\s*\([^)]*\)\s*\{", code, re.M)
        if m and m.group(1) not in ("if", "for", "while", "switch", "catch", "function"):
            name = m.group(1)
            return name, name + "Impl"
        return None
    if lang == "shell":
        m = re.search(r"^\s*(?:function\s+)?([A-Za-z_][\w]*)\s*\(\)", code, re.M)
        if m:
            name = m.group(1)
            return name, (name.lstrip("_") + "_impl")
        return None
    return None


def editing_prompts(rng, pools, n):
    plan = {"python": int(n * 0.45), "c": int(n * 0.12), "cpp": int(n * 0.12), "js": int(n * 0.16)}
    plan["shell"] = n - sum(plan.values())
    out = []
    for lang in ("python", "c", "cpp", "js", "shell"):
        pool = pools[lang]
        tasks = EDIT_TASKS[lang]
        k = 0
        for ex in pool:
            if k >= plan[lang]:
                break
            if ex.get("used"):
                continue
            # rotate through the task list, starting at a seeded offset, so every edit kind appears
            tries = 0
            while tries < len(tasks):
                instr, kind = tasks[(k + tries) % len(tasks)]
                if kind is None:
                    break
                rt = rename_target(ex)
                if rt:
                    instr = instr.format(old=rt[0], new=rt[1])
                    break
                tries += 1
            if "{old}" in instr:
                continue
            ex["used"] = True
            code = fence(LANG_TAG[lang], ex["code"])
            user = instr + "\n\n" + code if rng.random() < 0.8 else code + "\n\n" + instr
            out.append((lang, ex["src"], user))
            k += 1
    return out


def explanation_prompts(rng, pools, n):
    plan = {"python": int(n * 0.4), "c": int(n * 0.15), "cpp": int(n * 0.12), "js": int(n * 0.15)}
    plan["shell"] = n - sum(plan.values())
    out = []
    for lang in ("python", "c", "cpp", "js", "shell"):
        k = 0
        for ex in pools[lang]:
            if k >= plan[lang]:
                break
            if ex.get("used"):
                continue
            ex["used"] = True
            t = EXPLAIN_TASKS[(k * 3 + len(out)) % len(EXPLAIN_TASKS)]
            if lang == "shell" and "complexity" in t:
                t = EXPLAIN_TASKS[0]
            instr = t.format(lname=LANG_NAME[lang])
            code = fence(LANG_TAG[lang], ex["code"])
            user = instr + "\n\n" + code if rng.random() < 0.75 else code + "\n\n" + instr
            out.append((lang, ex["src"], user))
            k += 1
    return out


DOC_TASKS = {
    "man page": [
        "Here is part of the manual page for `{title}`. Summarize it in plain language.\n\n{text}",
        "Explain to a beginner what `{title}` is for, based on this excerpt from its man page, and give two example uses.\n\n{text}",
        "{text}\n\nThis is from the man page of `{title}`. Rewrite it as a short, friendly how-to guide.",
        "Read this excerpt from the `{title}` manual and list its key points as bullet points, then add a one-paragraph summary.\n\n{text}",
    ],
    "documentation": [
        "Summarize the following documentation excerpt from {title}:\n\n{text}",
        "Here is an excerpt from the documentation of {title}. Explain what it says for someone who has never used it.\n\n{text}",
        "{text}\n\nWhat are the main points of this documentation excerpt ({title})? Answer in a few short paragraphs.",
        "Rewrite this excerpt from the {title} documentation as a short FAQ with 3-5 questions and answers.\n\n{text}",
    ],
    "license": [
        "Explain in plain English what this part of the {title} license says, and what it means for someone using the software.\n\n{text}",
        "Summarize the obligations and permissions in this excerpt of the {title} license.\n\n{text}",
        "{text}\n\nThis is from the {title} license text. Give a short plain-language summary and point out anything a developer should watch for.",
    ],
    "module": [
        "Here is the documentation of the Python module `{title}`. Summarize what the module is for and how one would use it.\n\n{text}",
        "Explain this module documentation (`{title}`) in simpler words, with a small example of its use.\n\n{text}",
    ],
}

WRITING_TEMPLATES = [
    ("Write a short essay on {x}.", [
        "why public libraries still matter", "the role of bees in agriculture", "how railways changed travel times",
        "what makes a good teacher", "the history of the bicycle", "why people enjoy puzzles",
        "the benefits and costs of remote work", "how maps shape the way we see the world",
        "the importance of clean drinking water", "why some animals migrate",
    ]),
    ("Begin a short story about {x}. Write the first few paragraphs only.", [
        "a clockmaker who discovers one of her clocks runs backwards", "two strangers stuck in a snowed-in train station",
        "a boy who finds an old radio that picks up tomorrow's news", "a baker whose bread makes people tell the truth",
        "a retired detective who receives a postcard with no stamp", "a robot gardener on an abandoned space station",
        "a translator who hears a language nobody else recognizes", "the last day of a travelling circus",
        "a chess player who keeps losing to a child", "a night-shift nurse who notices the hospital has an extra floor",
    ]),
    ("Describe {x}, focusing on the details that bring it to life.", [
        "a quiet library on a rainy afternoon", "a mountain village at dawn in winter", "a busy train station during rush hour",
        "an old workshop full of tools", "a beach after a storm", "a night sky far from any city",
        "a kitchen on the morning of a big family celebration", "a small bookshop in an old town",
    ]),
    ("Explain {x} for a reader without a background in the subject.", [
        "how the ancient Romans built aqueducts", "why the Industrial Revolution started in Britain",
        "how the first vaccines were developed", "what caused the fall of the Western Roman Empire",
        "how the telegraph changed communication", "how the Dutch reclaimed land from the sea",
        "why the Black Death spread so fast", "how the Panama Canal was built",
        "what the Renaissance was and why it began in Italy", "how the Apollo program got people to the Moon",
    ]),
    ("Write a letter from {x}.", [
        "a small coastal town's mayor inviting tourists to the first summer festival",
        "a grandmother to her grandson who is leaving for university",
        "a soldier in 1915 to his younger sister", "a zookeeper to the children who adopted a penguin",
        "a ship's cook in 1850 to his family back home", "a first-year teacher to herself ten years from now",
    ]),
    ("Write a short, persuasive speech arguing that {x}.", [
        "every school should teach cooking", "cities should have more car-free streets",
        "everyone should learn basic first aid", "museums should be free to enter",
        "children should spend more time outdoors", "people should repair things instead of replacing them",
    ]),
]


def prose_prompts(rng, docs, n):
    out = []
    n_writing = n // 3
    n_docs = n - n_writing
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    plan = {"man page": int(n_docs * 0.4), "documentation": int(n_docs * 0.3), "license": int(n_docs * 0.12)}
    plan["module"] = n_docs - sum(plan.values())
    for kind in ("man page", "documentation", "license", "module"):
        pool = by_kind.get(kind, [])
        rng.shuffle(pool)
        tasks = DOC_TASKS[kind]
        seen_titles = []
        k = 0
        for d in pool:
            if k >= plan[kind]:
                break
            if kind == "license" and seen_titles.count(d["title"]) >= 3:
                continue
            if kind != "license" and d["title"] in seen_titles:
                continue
            # the Google Cloud SDK ships ~16k near-identical gcloud man pages: keep a few
            if d["title"].startswith("gcloud") and sum(t.startswith("gcloud") for t in seen_titles) >= 3:
                continue
            seen_titles.append(d["title"])
            user = tasks[k % len(tasks)].format(title=d["title"], text=d["text"])
            out.append((kind.replace(" ", ""), d["src"], user))
            k += 1
    writing = []
    for tmpl, xs in WRITING_TEMPLATES:
        for x in xs:
            writing.append(tmpl.format(x=x))
    rng.shuffle(writing)
    for w in writing[:n_writing]:
        out.append(("writing", "template", w))
    return out


CHAT_TEMPLATES = [
    ("Can you explain in simple terms what {x} is?", [
        "compound interest", "a mortgage", "DNS", "photosynthesis", "a black hole", "machine learning",
        "a vaccine", "the greenhouse effect", "an index fund", "a credit score", "blockchain", "quantum computing",
        "a VPN", "the stock market", "a placebo", "an API", "cloud computing", "a recession", "a neural network",
        "the immune system", "an electric car battery", "Unicode", "public-key cryptography",
    ]),
    ("What's the difference between {x}?", [
        "a list and a tuple in Python", "TCP and UDP", "a process and a thread", "the stack and the heap",
        "HTTP and HTTPS", "SQL and NoSQL databases", "weather and climate", "a virus and a bacterium",
        "baking soda and baking powder", "a Roth IRA and a traditional IRA", "RAM and storage",
        "an SSD and a hard drive", "let, const and var in JavaScript", "== and is in Python",
        "a compiler and an interpreter", "latency and bandwidth", "a debit card and a credit card",
        "concurrency and parallelism", "unit tests and integration tests", "Docker and a virtual machine",
    ]),
    ("How do I {x}?", [
        "change a flat tyre on a bicycle", "make a good cup of pour-over coffee", "start running if I've never exercised",
        "write a good README for my project", "set up a Python virtual environment", "back up my photos safely",
        "clean a cast iron pan", "make my home Wi-Fi faster", "prepare for a long hike", "write a cover letter",
        "read a nutrition label", "keep a sourdough starter alive", "undo the last commit in git",
        "find a memory leak in a C program", "set up SSH keys for GitHub", "make a simple budget",
        "speed up a slow SQL query", "choose a good password",
    ]),
    ("I'm {x}. Any practical tips?", [
        "moving to a new city next month", "starting my first job as a software developer", "about to adopt a cat",
        "planning a road trip with two kids", "trying to drink less coffee", "learning to cook for myself for the first time",
        "going to give a presentation at work", "training for my first 10k run", "working from home and feel isolated",
        "trying to read more books", "starting a vegetable garden on a balcony", "struggling to focus while studying",
        "hosting a dinner party for eight people", "trying to save money for a holiday",
    ]),
    ("What are some good ways to {x}?", [
        "learn to touch-type", "stay motivated on a long project", "remember people's names", "reduce food waste at home",
        "get better at public speaking", "learn a musical instrument as an adult", "keep a tidy desk",
        "make new friends after university", "practise solving programming puzzles",
        "improve my handwriting", "get started with open-source contributions", "learn data structures",
    ]),
    ("Is it true that {x}?", [
        "we only use 10% of our brains", "goldfish have a three-second memory", "lightning never strikes the same place twice",
        "cracking your knuckles causes arthritis", "you should wait 30 minutes after eating before swimming",
        "Python is too slow for real applications", "more RAM always makes a computer faster",
        "the Great Wall of China is visible from space",
    ]),
    ("Give me a quick overview of {x}.", [
        "how a CPU executes instructions", "the history of the internet", "how HTTPS keeps connections secure",
        "what Kubernetes is used for", "the rules of chess", "how solar panels work", "how a refrigerator keeps food cold",
        "what regular expressions are good for", "the main ideas of object-oriented programming",
        "how search engines rank pages",
    ]),
    ("Why {x}?", [
        "does the sky look blue during the day and red at sunset", "do onions make people cry",
        "do computers use binary", "does bread go stale", "do cats purr", "does ice float on water",
        "do we get jet lag", "do programmers say 'premature optimization is the root of all evil'",
        "is floating-point arithmetic sometimes inexact", "do airplanes fly so high",
        "do some websites load slowly on a fast connection", "does my laptop fan get loud",
    ]),
    ("I have a question about programming: {x}", [
        "when should I use a dictionary instead of a list in Python?", "what does 'undefined behaviour' mean in C?",
        "why do people say global variables are bad?", "how does recursion work, with a simple example?",
        "what is a race condition?", "what is the point of writing tests?", "what does a linker do?",
        "should I learn Rust or Go first?", "what is dependency injection?", "how do hash tables handle collisions?",
        "what is the difference between pass-by-value and pass-by-reference?", "what is a memory leak?",
        "how do I choose good variable names?", "what does 'idempotent' mean for an HTTP request?",
    ]),
    ("Can you recommend {x}?", [
        "a simple weekly workout plan for a beginner", "a few easy vegetarian dinners", "some board games for four adults",
        "a way to organize my notes for a programming course", "a reading list for learning about economics",
        "a morning routine that isn't too demanding", "some beginner-friendly programming projects",
    ]),
]


def chat_prompts(rng, n):
    allp = []
    for tmpl, xs in CHAT_TEMPLATES:
        for x in xs:
            allp.append(tmpl.format(x=x))
    rng.shuffle(allp)
    return [("chat", "template", u) for u in allp[:n]]


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--eval", default=DEFAULT_EVAL, help="evaluation prompts to exclude")
    ap.add_argument("--seed", type=int, default=20241204)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    excl = Excluder(load_eval(args.eval))

    pyfiles = python_sources()
    funcs, py_ex, moddocs = python_items(pyfiles)
    decls = glibc_decls()
    other = code_excerpts(rng)
    pools = {"python": py_ex, **other}
    for lang in pools:
        # at most two excerpts per source file, then a seeded shuffle
        per, kept = {}, []
        for ex in pools[lang]:
            key = ex["src"].split(":")[1] if lang == "python" else ex["src"]
            per[key] = per.get(key, 0) + 1
            if per[key] <= 2 and not excl.blocked(ex["code"]):
                kept.append(ex)
        rng.shuffle(kept)
        pools[lang] = kept
    docs = man_excerpts() + doc_excerpts() + license_excerpts() + \
        [{"src": m["src"], "title": m["module"], "text": m["text"], "kind": "module"} for m in moddocs]
    print("sources: %d py files, %d py functions with docstrings, %d glibc decls, excerpts %s, docs %d" % (
        len(pyfiles), len(funcs), len(decls), {k: len(v) for k, v in pools.items()}, len(docs)), file=sys.stderr)

    cats = {
        "code-completion": completion_prompts(rng, funcs, decls, TARGETS["code-completion"]),
        "code-editing": editing_prompts(rng, pools, TARGETS["code-editing"]),
        "code-explanation": explanation_prompts(rng, pools, TARGETS["code-explanation"]),
        "prose": prose_prompts(rng, docs, TARGETS["prose"]),
        "chat": chat_prompts(rng, TARGETS["chat"]),
    }
    prefix = {"code-completion": "cc", "code-editing": "ce", "code-explanation": "cx", "prose": "pr", "chat": "ch"}
    records, seen_users = [], []
    seen_set = {}
    dropped = {}
    for cat in ("code-completion", "code-editing", "code-explanation", "prose", "chat"):
        k = 0
        for sub, src, user in cats[cat]:
            why = excl.blocked(user)
            if why or user in seen_set:
                dropped[why or "duplicate"] = dropped.get(why or "duplicate", 0) + 1
                continue
            seen_set[user] = True
            k += 1
            records.append({"id": f"{prefix[cat]}-{sub}-{k:04d}", "category": cat, "source": src, "user": user})
    rng.shuffle(records)  # mixed order, so a partial generation run covers every category
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    counts = {}
    for r in records:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    print("wrote %d prompts to %s: %s" % (len(records), args.out, counts), file=sys.stderr)
    print("dropped: %s" % dropped, file=sys.stderr)


if __name__ == "__main__":
    main()
