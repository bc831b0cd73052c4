#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""doc_agent.py - an example agent in Python that edits documentation the
way a writing agent would, with bumba keeping it out of the other agents'
way.  Standard library only, plus the ``bumba`` package (agents/python).

    PYTHONPATH=agents/python python3 agents/examples/doc_agent.py \\
        [--socket PATH] [--type T] [--name N] [--department D]
        [--capability C]... [--restructure] [--territory PATH]...
        [--section FILE:TITLE]... [--docstrings HEADER] [--readme TITLE]
        [--config SECTION.KEY=VALUE]... [--changelog PATH] [--think MS]
        [--hold-until FILE] [--no-lock]

What it shows, task by task (they run in this order):

``bumba.connect(...)``
    registers the agent, or joins the surrounding ``bumba-run`` agent
    (same id, same territories) when run under it.
``--restructure``
    ``with agent.territory(["docs"])``: claims the whole docs/ tree, and in
    ONE transaction (``with agent.transaction() as tx``) moves the style
    draft to docs/design/style.md and rewrites docs/index.md to link to its
    new place.  Either both happen or neither: no dangling link, ever.  The
    territory is released when the ``with`` block ends.
``--territory PATH``
    the agent's home, claimed as one EXCLUSIVE territory.  While another
    agent holds an overlapping claim, the claim raises
    :class:`bumba.ConflictError` listing every conflict; the agent prints
    them and retries with backoff.  Files in its territory it writes
    without locks.
``--section FILE:TITLE``
    adds a section to FILE (in its territory): a read-modify-write with
    ``agent.safe_read`` and ``agent.safe_write`` (atomic replace).
``--docstrings HEADER``
    documents prototypes of the shared C header that have no comment yet,
    holding ``with agent.lock(HEADER)`` (the header is nobody's territory,
    several agents edit it).
``--readme TITLE``
    writes its section of the shared README.md, under its lock.
``--config SECTION.KEY=VALUE``
    sets a key of config/project.ini, under its lock.
every task
    appends exactly one line to the shared CHANGELOG.md under its lock.

Files end with a seal line (CRC-32 and length of the rest, in the file's
comment syntax) that the agent checks on every read and writes on every
write, and each edit carries its author's tag ``@<Name>#<task>``; the agent
reports what it did on stdout, one fact per line, in the same format as
agents/examples/refactor_agent.c (``claimed``, ``conflict``, ``edit``,
``moved``, ``txn``, ``op``, ``owner-died``, ``holding until``, ``done``), so
that agents/demo.sh can check at the end that every edit is still there.

``--no-lock`` edits the shared files (CHANGELOG.md, README.md, project.ini)
with plain reads and writes and no lock, to watch the demo's end check
catch the lost updates the lock prevents.  Exit status: 0 done, 1 error,
2 bad usage.
"""

import argparse
import os
import re
import sys
import time
import zlib

import bumba

LOCK_TIMEOUT = 30.0     # seconds
CLAIM_DEADLINE = 30.0   # seconds of retrying a conflicting claim
HOLD_DEADLINE = 60.0    # seconds of waiting for --hold-until's file

# Canned prose: the agent is an example, its writing is not the point.
PROSE = {
    "Interaction principles": "Every command answers within 100 ms or shows progress; "
                              "errors say what to do next, not only what failed.",
    "Buttons": "Primary actions use the filled style; at most one per view.",
    "Forms": "Labels sit above fields; validation runs on blur, never on each key.",
    "Next quarter": "Ship expression history, then undo; measure both by weekly use.",
    "Later": "Plugins for custom operators, once the core API has settled.",
    "Competitors": "bc and dc are everywhere but terse; GUI calculators lack scripting.",
    "Pricing": "Free for individuals; teams pay for shared history and audit.",
}


# ---------------------------------------------------------------------------
# Seals: the last line of every file says what the rest must be
# ---------------------------------------------------------------------------

def _comment(path):
    """The (open, close) comment markers for the seal line of path."""
    ext = os.path.splitext(path)[1]
    if ext in (".c", ".h"):
        return "/*", " */"
    if ext == ".md":
        return "<!--", " -->"
    if ext == ".ini":
        return ";", ""
    return "#", ""


def seal(path, body):
    """body (str) followed by its seal line, as bytes."""
    if body and not body.endswith("\n"):
        body += "\n"
    data = body.encode()
    opn, cls = _comment(path)
    return data + ("%s bumba-seal crc32=%08x bytes=%d%s\n"
                   % (opn, zlib.crc32(data), len(data), cls)).encode()


_SEAL = re.compile(rb"bumba-seal crc32=([0-9a-f]{8}) bytes=([0-9]+)")


class Torn(Exception):
    """A file whose seal does not match: torn, mixed, or written around bumba."""


def unseal(path, data):
    """The body (str) of a sealed file's bytes; :class:`Torn` if it is not
    one complete version written by an agent."""
    if not data.endswith(b"\n"):
        raise Torn("%s: no seal line at the end: torn file?" % path)
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1
    m = _SEAL.search(data, cut)
    if not m or int(m.group(2)) != cut or int(m.group(1), 16) != zlib.crc32(data[:cut]):
        raise Torn("%s: the seal does not match the content: torn, mixed, or "
                   "written around bumba" % path)
    return data[:cut].decode()


# ---------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------

class DocAgent:
    """One documentation agent: a connected :class:`bumba.Agent` plus the
    bookkeeping of its tasks."""

    def __init__(self, agent, opts):
        self.agent = agent
        self.opts = opts
        self.id = agent.id
        # Tags are @<Name>#<task>: the <Name> part of "<Type>-<Name>-<ms>-<hex>".
        self.name = self.id.split("-")[1]
        self.root = agent.workspace_root(0)
        self.task = 0
        self.tag = None
        self.ops = 0
        self.claim_retries = 0
        self.owner_died = 0

    # -- reporting ----------------------------------------------------------

    @staticmethod
    def say(*words):
        """One line of the report on stdout (flushed: the demo follows it)."""
        print(*words, flush=True)

    def next_task(self):
        """Starts a task: its tag is what each of its edits carries."""
        self.task += 1
        self.tag = "@%s#%d" % (self.name, self.task)
        self.agent.set_status("busy")

    def think(self):
        """Where a real agent would compose its edit; the demo uses the pause
        to make the others wait for locks."""
        if self.opts.think > 0:
            time.sleep(self.opts.think / 1000.0)

    # -- files --------------------------------------------------------------

    def read(self, path):
        """A workspace file's body, its seal checked.  No lock needed: safe
        writes replace files whole, so a read sees one version."""
        return unseal(path, self.agent.safe_read(path))

    def write(self, path, body):
        """Replaces path atomically (with a backup of the old version)."""
        self.agent.safe_write(path, seal(path, body), backup=True)

    def edit_shared(self, path, change):
        """Read-modify-write of a shared file under its exclusive lock: the
        lock keeps two agents from both reading one version and the second
        write dropping the first one's edit.  change(body) -> new body."""
        if self.opts.no_lock:
            full = os.path.join(self.root, path)
            with open(full, "rb") as f:
                body = unseal(path, f.read())
            new = change(body)
            self.think()
            tmp = "%s.nolock-%d" % (full, os.getpid())
            with open(tmp, "wb") as f:
                f.write(seal(path, new))
            os.rename(tmp, full)
            return
        self.agent.set_status("blocked")
        with self.agent.lock(path, timeout=LOCK_TIMEOUT) as lk:
            self.agent.set_status("busy")
            if lk.owner_died:
                # The holder before us was killed holding the lock; its safe
                # write happened whole or not at all, and read() checks the
                # seal, so the file is sound.
                self.owner_died += 1
                self.say("owner-died", path, "fence", lk.fence)
            new = change(self.read(path))
            self.think()
            self.write(path, new)

    def log_task(self, summary):
        """Ends every task: one line in the shared changelog, under its lock."""
        line = "- %s %s (%s)\n" % (self.tag, summary, self.id)
        self.edit_shared(self.opts.changelog, lambda body: body + line)
        self.ops += 1
        self.say("edit", self.opts.changelog, self.tag)
        self.say("op", self.tag, summary)
        self.agent.set_status("active")

    # -- territories --------------------------------------------------------

    def claim(self, paths, title):
        """Claims paths as one EXCLUSIVE territory, retrying while others
        hold overlapping claims.  A refused claim takes nothing, so there is
        nothing to undo before trying again."""
        deadline = time.monotonic() + CLAIM_DEADLINE
        backoff = 0.02
        told = False
        while True:
            try:
                t = self.agent.territory(paths, kind="exclusive", title=title)
                break
            except bumba.ConflictError as e:
                if time.monotonic() > deadline:
                    raise
                self.claim_retries += 1
                if not told:
                    for c in e.conflicts:
                        self.say("conflict", c.path, c.holder, c.kind)
                    told = True
                self.agent.set_status("blocked")
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.32)
        self.agent.set_status("busy")
        self.say("claimed", t.id, *t.paths)
        return t

    # -- tasks --------------------------------------------------------------

    def restructure(self):
        """Moves the style draft into docs/design/ and fixes the index's
        link, as one transaction inside a claim of the whole docs/ tree."""
        old, new, index = "docs/draft-style.md", "docs/design/style.md", "docs/index.md"
        self.next_task()
        with self.claim(["docs"], "docs restructure"):
            body = self.read(index)
            body = body.replace("[Style guide (draft)](draft-style.md)",
                                "[Style guide](design/style.md)")
            body += "\nThe style guide moved to design/style.md (%s).\n" % self.tag
            # Time to "review" both files: the claim on all of docs/ lasts
            # a while, and others wanting parts of it wait.
            self.think()
            self.think()
            with self.agent.transaction() as tx:
                tx.move(old, new)
                tx.write(index, seal(index, body))
            # Leaving the with block committed: both changes, or (on an
            # exception) neither.
            self.say("moved", old, new, self.tag)
            self.say("edit", index, self.tag)
            self.say("txn", self.tag, "committed 2 files")
        self.log_task("moved %s to %s and fixed its link in %s in one transaction"
                      % (old, new, index))

    def section(self, spec):
        """--section FILE:TITLE: a new section in a file of our territory."""
        path, _, title = spec.partition(":")
        self.next_task()
        body = self.read(path)
        text = PROSE.get(title, "To be written.")
        body += "\n## %s\n\n%s\n\n_Written by %s._\n" % (title, text, self.tag)
        self.think()
        self.write(path, body)
        self.say("edit", path, self.tag)
        self.log_task("added the section \"%s\" to %s" % (title, path))

    def docstrings(self, header, limit=2):
        """Documents up to ``limit`` undocumented prototypes of a shared
        header, under the header's lock."""
        done = []

        def change(body):
            lines = body.split("\n")
            out = []
            for line in lines:
                m = re.match(r"^\w[\w \*]*?\b(\w+)\((.*)\);", line)
                prev = out[-1] if out else ""
                if m and len(done) < limit and not prev.rstrip().endswith("*/"):
                    done.append(m.group(1))
                    out.append("/** %s(%s): see docs/index.md. (%s) */"
                               % (m.group(1), m.group(2), self.tag))
                out.append(line)
            return "\n".join(out)

        self.next_task()
        self.edit_shared(header, change)
        if done:
            self.say("edit", header, self.tag)
        self.log_task("documented %s in %s" % (", ".join(done) or "nothing new", header))

    def readme(self, title):
        """--readme TITLE: our section of the shared README.md."""
        path = "README.md"
        self.next_task()
        text = "## %s\n\nOwned by %s; see docs/. (%s)\n" % (title, self.name, self.tag)

        def change(body):
            # Replace the section if it is there, else append it.
            pat = re.compile(r"^## %s\n.*?(?=^## |\Z)" % re.escape(title), re.M | re.S)
            if pat.search(body):
                return pat.sub(lambda m: text + "\n", body, count=1)
            return body + "\n" + text

        self.edit_shared(path, change)
        self.say("edit", path, self.tag)
        self.log_task("wrote the \"%s\" section of %s" % (title, path))

    def config(self, spec):
        """--config SECTION.KEY=VALUE in config/project.ini, under its lock."""
        path = "config/project.ini"
        name, _, value = spec.partition("=")
        section, _, key = name.partition(".")
        if not section or not key:
            raise ValueError("bad --config %r: SECTION.KEY=VALUE" % spec)
        self.next_task()
        entry = "; %s\n%s = %s\n" % (self.tag, key, value)

        def change(body):
            m = re.search(r"^\[%s\]\n" % re.escape(section), body, re.M)
            if not m:
                return body + "\n[%s]\n%s" % (section, entry)
            # The section ends at a blank line, the next section or the end.
            end = re.compile(r"^(\[|\n)", re.M).search(body, m.end())
            at = end.start() if end else len(body)
            sect = re.sub(r"^; .*\n%s *=.*\n|^%s *=.*\n" % (re.escape(key), re.escape(key)),
                          "", body[m.end():at], flags=re.M)
            return body[:m.end()] + sect + entry + body[at:]

        self.edit_shared(path, change)
        self.say("edit", path, self.tag)
        self.log_task("set %s in %s" % (spec, path))

    def hold(self, path):
        """--hold-until FILE: the demo's barrier (stay registered, keep the
        territory).  Polling is fine for a wait of a second or two."""
        self.agent.set_status("idle")
        self.say("holding until", path)
        deadline = time.monotonic() + HOLD_DEADLINE
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError("nobody created %s" % path)
            time.sleep(0.02)


def parse_args(argv):
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description="An example documentation agent for bumba.")
    p.add_argument("--socket")
    p.add_argument("--type")
    p.add_argument("--name")
    p.add_argument("--department")
    p.add_argument("--capability", action="append", default=[])
    p.add_argument("--restructure", action="store_true")
    p.add_argument("--territory", action="append", default=[])
    p.add_argument("--section", action="append", default=[], metavar="FILE:TITLE")
    p.add_argument("--docstrings", metavar="HEADER")
    p.add_argument("--readme", metavar="TITLE")
    p.add_argument("--config", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--changelog", default="CHANGELOG.md")
    p.add_argument("--think", type=int, default=20, metavar="MS")
    p.add_argument("--hold-until", metavar="FILE")
    p.add_argument("--no-lock", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    """Runs the tasks in order; returns the exit status."""
    opts = parse_args(argv)
    try:
        # Registers, or joins the agent of a surrounding bumba-run.
        with bumba.connect(socket=opts.socket, type=opts.type, name=opts.name,
                           department=opts.department,
                           capabilities=opts.capability) as agent:
            a = DocAgent(agent, opts)
            a.say("agent", a.id, "pid", os.getpid(),
                  *(["(joined the bumba-run agent)"] if os.environ.get("BUMBA_AGENT_ID")
                    else []))
            agent.set_status("active")
            if opts.restructure:
                a.restructure()
            home = a.claim(opts.territory, "home") if opts.territory else None
            for spec in opts.section:
                a.section(spec)
            if opts.docstrings:
                a.docstrings(opts.docstrings)
            if opts.readme:
                a.readme(opts.readme)
            for spec in opts.config:
                a.config(spec)
            if opts.hold_until:
                a.hold(opts.hold_until)
            a.say("done", a.id, "ops=%d" % a.ops, "claim_retries=%d" % a.claim_retries,
                  "owner_died=%d" % a.owner_died)
            if home:
                home.release()
    except (bumba.Error, Torn, OSError, ValueError) as e:
        print("doc_agent: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
