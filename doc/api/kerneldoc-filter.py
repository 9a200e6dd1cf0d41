#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""kerneldoc-filter.py HEADER: print HEADER with its kernel-doc comments
rewritten in the form doxygen reads; doxygen runs it as its INPUT_FILTER.
Every line stays on its own line, so doxygen's warnings name the header's
real line numbers.

    /**                               /**
     * name() - summary                * @brief summary
     * @arg: text                      * @param arg text
     * text that names @arg            * text that names @p arg
     * Context: text                   * @context text    (alias: a paragraph)
     * Return: text                    * @return text
     */                                */

In a struct or enum comment the "@member: text" lines are blanked and the
text moves onto the member's own line as a trailing doc comment, which is
where doxygen looks for it; a trailing plain comment on a member becomes
its doc comment too.  Kernel-doc's "/* private: */" marker, or "All fields
are private." in the comment, hides the members from the reference.  A
macro is documented by a plain comment on its own line or just above it.
The header's opening comment (after the SPDX line) becomes the file's
description.
"""
import re
import sys

SUMMARY = re.compile(r'^(\s*\*\s+)(?:(struct|enum|union)\s+\w+|\w+\(\))'
                     r'\s+-\s+(.*)$')
TAG = re.compile(r'^(\s*\*\s+)@(\w+):\s*(.*)$')
SECTION = re.compile(r'^(\s*\*\s+)(Context|Return):\s*(.*)$')
CONTINUATION = re.compile(r'^\s*\*(?:\t|\s{2,})\s*(\S.*)$')
INLINE_ARG = re.compile(r'(?<![\w@\\])@(\w+)')
FUNC_PTR = re.compile(r'\(\s*\*\s*(\w+)\s*\)')
FIELD = re.compile(r'(\w+)\s*(?:\[[^\]]*\]\s*)*;')
ENUMERATOR = re.compile(r'^\s*(\w+)\s*(?:=[^,/]*)?,?\s*(?:/\*.*)?$')
TRAILING = re.compile(r'\s*/\*\s*(.*?)\s*\*/\s*$')


def inline_args(text):
    """kernel-doc's @name inside prose is doxygen's @p name."""
    return INLINE_ARG.sub(r'@p \1', text)


def doc_block(lines):
    """Rewrite one /** ... */ block; return it and its member docs."""
    out, members, kind, current = [], {}, None, None
    for i, line in enumerate(lines):
        m = SUMMARY.match(line) if i == 1 else None
        if m:
            kind = m.group(2) or 'function'
            out.append(m.group(1) + '@brief ' + inline_args(m.group(3)))
            continue
        m = TAG.match(line)
        if m:
            text = inline_args(m.group(3))
            if kind == 'function':
                out.append(m.group(1) + '@param ' + m.group(2) + ' ' + text)
            else:
                current = m.group(2)
                members[current] = [text]
                out.append(' *')
            continue
        m = CONTINUATION.match(line) if current else None
        if m:
            members[current].append(inline_args(m.group(1)))
            out.append(' *')
            continue
        current = None
        m = SECTION.match(line)
        if m:
            cmd = '@context ' if m.group(2) == 'Context' else '@return '
            out.append(m.group(1) + cmd + inline_args(m.group(3)))
            continue
        out.append(inline_args(line) if i else line)
    return out, members


def member_name(line, is_enum):
    if is_enum:
        m = ENUMERATOR.match(line)
        return m.group(1) if m else None
    m = FUNC_PTR.search(line) or FIELD.search(line)
    return m.group(1) if m else None


def body_line(line, state):
    """One line inside a documented struct or enum body."""
    if re.match(r'^\s*/\*\s*private:\s*\*/\s*$', line):
        return '/** @privatesection */'
    code = TRAILING.sub('', line)
    name = member_name(code, state['enum']) if code.strip() else None
    if name and not state['pending']:
        state['pending'] = name
    m = TRAILING.search(line)
    if m and state['pending']:
        state['docs'].setdefault(state['pending'], []).append(m.group(1))
    ends = code.rstrip().endswith(';' if not state['enum'] else ',') or (
        state['enum'] and name and not code.rstrip().endswith(','))
    if not (ends and state['pending']):
        return line
    text = ' '.join(state['docs'].pop(state['pending'], []))
    state['pending'] = None
    if not text:
        return code if m else line
    return code.rstrip() + ' /**< ' + text.replace('*/', '* /') + ' */'


def define_line(line):
    """A #define: its trailing plain comment becomes its doc comment."""
    return re.sub(r'/\*(?![*!])\s*(.*?)\s*\*/\s*$', r'/**< \1 */', line)


def comment_before_define(lines, i):
    """Is lines[i] a plain comment just above an uncommented #define?"""
    j = i
    while j < len(lines) and '*/' not in lines[j]:
        j += 1
    nxt = lines[j + 1] if j + 1 < len(lines) else ''
    return nxt.startswith('#define') and '/*' not in nxt


def convert(lines):
    out, i, seen_code, body = [], 0, False, None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not seen_code and stripped == '/*':
            out.append('/** @file')
            seen_code = True
        elif stripped == '/**':
            j = i
            while not lines[j].strip().endswith('*/'):
                j += 1
            block, members = doc_block(lines[i:j + 1])
            out.extend(block)
            i = j
            nxt = lines[j + 1] if j + 1 < len(lines) else ''
            if re.match(r'^\s*(struct|enum|union)\b.*\{', nxt):
                body = {'enum': nxt.lstrip().startswith('enum'),
                        'docs': members, 'pending': None, 'depth': 0,
                        'private': any('All fields are private' in b
                                       for b in lines[i - len(block) + 1:j])}
        elif body is not None:
            body['depth'] += line.count('{') - line.count('}')
            if '{' in line and body.pop('private', False):
                out.append(line + ' /** @privatesection */')
            else:
                out.append(line if '{' in line or body['depth'] <= 0
                           else body_line(line, body))
            if body['depth'] <= 0:
                body = None
        elif line.startswith('#define'):
            out.append(define_line(line))
        elif (line.startswith('/*') and not line.startswith('/**')
              and seen_code and comment_before_define(lines, i)):
            out.append('/**' + line[2:])
        else:
            if stripped and not stripped.startswith('/*'):
                seen_code = True
            out.append(line)
        i += 1
    return out


def main():
    with open(sys.argv[1], encoding='utf-8') as f:
        lines = f.read().split('\n')
    sys.stdout.write('\n'.join(convert(lines)))


if __name__ == '__main__':
    main()
