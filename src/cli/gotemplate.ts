/**
 * A subset of Go's text/template, enough for docker/nerdctl `--format`:
 * literal text (printed as is: a `\t` typed in the shell stays backslash-t, as
 * Go prints it), `{{.Field}}`, `{{.A.B}}`, `{{.}}`, `{{$}}`, pipelines
 * (`{{.Name | upper}}`), parenthesised calls, string/number/bool literals,
 * `{{if}}`/`{{else}}`/`{{end}}`, `{{range}}` (with `$k, $v :=`), `{{with}}`,
 * trim markers `{{-`/`-}}`, and the functions of docker's templates package
 * (json, join, split, lower, upper, title, truncate, pad) plus Go's builtins
 * index, len, eq, ne, not, and, or, print, printf (%s %v %d %q).
 */

export class TemplateError extends Error {
  constructor(message: string) {
    super(`template: ${message}`)
    this.name = 'TemplateError'
  }
}

type Expr =
  | {k: 'field'; base: 'dot' | {var: string} | {expr: Expr}; path: string[]}
  | {k: 'lit'; v: unknown}
  | {k: 'call'; fn: string; args: Expr[]}
  | {k: 'pipe'; cmds: Expr[]}

type Node =
  | {k: 'text'; s: string}
  | {k: 'out'; e: Expr}
  | {k: 'if' | 'with'; e: Expr; then: Node[]; else: Node[]}
  | {k: 'range'; e: Expr; vars: string[]; body: Node[]; else: Node[]}

export interface Template {
  execute(data: unknown): string
}

const FUNCS: Record<string, (...a: unknown[]) => unknown> = {
  json: (v) => JSON.stringify(v === undefined ? null : v),
  join: (a, sep) => (Array.isArray(a) ? a.map(str).join(String(sep)) : str(a)),
  split: (s, sep) => String(s).split(String(sep)),
  lower: (s) => str(s).toLowerCase(),
  upper: (s) => str(s).toUpperCase(),
  title: (s) => str(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  truncate: (s, n) => [...str(s)].slice(0, Number(n)).join(''),
  pad: (s, l, r) => ' '.repeat(Number(l)) + str(s) + ' '.repeat(Number(r)),
  len: (v) => {
    if (typeof v === 'string' || Array.isArray(v)) return v.length
    if (v && typeof v === 'object') return Object.keys(v).length
    throw new TemplateError(`error calling len: len of type ${typeof v}`)
  },
  index: (v, ...keys) => {
    let cur = v
    for (const k of keys) {
      if (cur === null || cur === undefined) return undefined
      if (Array.isArray(cur) || typeof cur === 'string') {
        const i = Number(k)
        if (!Number.isInteger(i) || i < 0 || i >= cur.length) throw new TemplateError(`error calling index: index out of range: ${k}`)
        cur = Array.isArray(cur) ? cur[i] : cur.charCodeAt(i)
      } else if (typeof cur === 'object') {
        cur = (cur as Record<string, unknown>)[String(k)]
      } else {
        throw new TemplateError(`error calling index: can't index item of type ${typeof cur}`)
      }
    }
    return cur
  },
  eq: (a, ...b) => b.some((x) => x === a),
  ne: (a, b) => a !== b,
  not: (a) => !truthy(a),
  and: (...a) => a.find((x) => !truthy(x)) ?? a[a.length - 1],
  or: (...a) => a.find((x) => truthy(x)) ?? a[a.length - 1],
  print: (...a) => a.map(str).join(''),
  println: (...a) => a.map(str).join(' ') + '\n',
  printf: (f, ...a) => {
    let i = 0
    return String(f).replace(/%[svdq%]/g, (m) => {
      if (m === '%%') return '%'
      const v = a[i++]
      if (m === '%q') return JSON.stringify(str(v))
      if (m === '%d') return String(Math.trunc(Number(v)))
      return str(v)
    })
  },
}

function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false
  if (Array.isArray(v)) return v.length > 0
  if (typeof v === 'object') return Object.keys(v).length > 0
  return true
}

/** Go's %v formatting of a value. */
function str(v: unknown): string {
  if (v === undefined) return '<no value>'
  if (v === null) return '<nil>'
  if (typeof v === 'string') return v
  if (Array.isArray(v)) return '[' + v.map(str).join(' ') + ']'
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>
    return 'map[' + Object.keys(o).sort().map((k) => `${k}:${str(o[k])}`).join(' ') + ']'
  }
  return String(v)
}

// ---------- lexer for the inside of an action ----------

type Tok = {t: 'field'; v: string} | {t: 'chain'; v: string} | {t: 'var'; v: string} | {t: 'str'; v: string} | {t: 'num'; v: number} | {t: 'id'; v: string} | {t: 'sym'; v: string}

function lexAction(src: string): Tok[] {
  const toks: Tok[] = []
  let i = 0
  while (i < src.length) {
    const c = src[i]!
    if (/\s/.test(c)) {
      i++
    } else if (c === '"') {
      let j = i + 1
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1
      if (j >= src.length) throw new TemplateError('unterminated quoted string')
      toks.push({t: 'str', v: JSON.parse(src.slice(i, j + 1)) as string})
      i = j + 1
    } else if (c === '`') {
      const j = src.indexOf('`', i + 1)
      if (j < 0) throw new TemplateError('unterminated raw quoted string')
      toks.push({t: 'str', v: src.slice(i + 1, j)})
      i = j + 1
    } else if (c === '.' && !/[0-9]/.test(src[i + 1] ?? '')) {
      const m = /^(\.[A-Za-z_][A-Za-z0-9_]*)+|^\./.exec(src.slice(i))!
      // `(pipeline).Field`: a field chain glued to a closing paren
      const glued = i > 0 && src[i - 1] === ')' && m[0] !== '.'
      toks.push({t: glued ? 'chain' : 'field', v: m[0]})
      i += m[0].length
    } else if (c === '$') {
      const m = /^\$[A-Za-z0-9_]*((\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(src.slice(i))!
      toks.push({t: 'var', v: m[0]})
      i += m[0].length
    } else if (/[-+0-9.]/.test(c)) {
      const m = /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?/.exec(src.slice(i))
      if (!m || Number.isNaN(Number(m[0]))) throw new TemplateError(`bad number syntax: ${src.slice(i)}`)
      toks.push({t: 'num', v: Number(m[0])})
      i += m[0].length
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!
      toks.push({t: 'id', v: m[0]})
      i += m[0].length
    } else if (src.startsWith(':=', i)) {
      toks.push({t: 'sym', v: ':='})
      i += 2
    } else if ('|(),'.includes(c)) {
      toks.push({t: 'sym', v: c})
      i++
    } else {
      throw new TemplateError(`unexpected ${JSON.stringify(c)} in command`)
    }
  }
  return toks
}

function fieldExpr(tok: Tok): Expr {
  if (tok.t === 'field') return {k: 'field', base: 'dot', path: tok.v === '.' ? [] : tok.v.slice(1).split('.')}
  const [name, ...path] = String(tok.v).split('.')
  return {k: 'field', base: {var: name!}, path}
}

/** Parses a pipeline from tokens (commands separated by |). */
function parsePipeline(toks: Tok[]): Expr {
  let pos = 0
  const operand = (): Expr => {
    const t = toks[pos++]
    if (!t) throw new TemplateError('missing value for command')
    switch (t.t) {
      case 'field':
      case 'var':
        return fieldExpr(t)
      case 'str':
        return {k: 'lit', v: t.v}
      case 'num':
        return {k: 'lit', v: t.v}
      case 'id':
        if (t.v === 'true' || t.v === 'false') return {k: 'lit', v: t.v === 'true'}
        if (t.v === 'nil') return {k: 'lit', v: null}
        if (!(t.v in FUNCS)) throw new TemplateError(`function ${JSON.stringify(t.v)} not defined`)
        return {k: 'call', fn: t.v, args: []}
      case 'chain':
        throw new TemplateError(`unexpected ${JSON.stringify(t.v)}`)
      case 'sym':
        if (t.v === '(') {
          const e = pipeline(')')
          if (toks[pos]?.t !== 'sym' || toks[pos]!.v !== ')') throw new TemplateError('unclosed left paren')
          pos++
          const next = toks[pos]
          if (next?.t === 'chain') {
            pos++
            return {k: 'field', base: {expr: e}, path: next.v.slice(1).split('.')}
          }
          return e
        }
        throw new TemplateError(`unexpected ${JSON.stringify(t.v)} in operand`)
    }
  }
  const command = (stop: string): Expr => {
    const first = operand()
    const args: Expr[] = []
    while (pos < toks.length && !(toks[pos]!.t === 'sym' && (toks[pos]!.v === '|' || toks[pos]!.v === stop))) args.push(operand())
    if (first.k === 'call') return {k: 'call', fn: first.fn, args}
    if (args.length) throw new TemplateError('can\'t give argument to non-function')
    return first
  }
  const pipeline = (stop: string): Expr => {
    const cmds: Expr[] = [command(stop)]
    while (toks[pos]?.t === 'sym' && toks[pos]!.v === '|') {
      pos++
      const c = command(stop)
      if (c.k !== 'call') throw new TemplateError('non executable command in pipeline stage 2')
      cmds.push(c)
    }
    return cmds.length === 1 ? cmds[0]! : {k: 'pipe', cmds}
  }
  const e = pipeline('')
  if (pos !== toks.length) throw new TemplateError(`unexpected ${JSON.stringify((toks[pos] as {v: unknown}).v)}`)
  return e
}

export function parseTemplate(src: string): Template {
  // Split into text and actions, honouring trim markers.
  const parts: Array<{text: string} | {action: string}> = []
  let i = 0
  let trimNext = false
  while (i < src.length) {
    const open = src.indexOf('{{', i)
    let text = open < 0 ? src.slice(i) : src.slice(i, open)
    if (trimNext) text = text.replace(/^\s+/, '')
    trimNext = false
    if (open < 0) {
      parts.push({text})
      break
    }
    let start = open + 2
    if (src.startsWith('- ', start) || (src[start] === '-' && /\s/.test(src[start + 1] ?? ''))) {
      text = text.replace(/\s+$/, '')
      start += 1
    }
    parts.push({text})
    // Find the closing }}, skipping over quoted strings.
    let close = -1
    for (let q = start; q < src.length; q++) {
      const ch = src[q]
      if (ch === '"') {
        q++
        while (q < src.length && src[q] !== '"') q += src[q] === '\\' ? 2 : 1
      } else if (ch === '`') {
        q = src.indexOf('`', q + 1)
        if (q < 0) break
      } else if (ch === '}' && src[q + 1] === '}') {
        close = q
        break
      }
    }
    if (close < 0) throw new TemplateError('unclosed action')
    let inner = src.slice(start, close)
    if (/\s-$/.test(inner)) {
      inner = inner.slice(0, -1)
      trimNext = true
    }
    parts.push({action: inner.trim()})
    i = close + 2
  }

  let pos = 0
  const parseList = (ends: string[]): {nodes: Node[]; end: string} => {
    const nodes: Node[] = []
    while (pos < parts.length) {
      const p = parts[pos++]!
      if ('text' in p) {
        if (p.text) nodes.push({k: 'text', s: p.text})
        continue
      }
      const a = p.action
      if (a.startsWith('/*')) continue
      const kw = /^(if|range|with|else|end)\b/.exec(a)?.[1]
      if (kw === 'end' || kw === 'else') {
        if (!ends.includes(kw)) throw new TemplateError(`unexpected {{${kw}}}`)
        if (kw === 'else' && a !== 'else') throw new TemplateError('else if / else with is not supported')
        return {nodes, end: kw}
      }
      if (kw === 'if' || kw === 'with' || kw === 'range') {
        let toks = lexAction(a.slice(kw.length))
        const vars: string[] = []
        const decl = toks.findIndex((t) => t.t === 'sym' && t.v === ':=')
        if (decl >= 0) {
          for (const t of toks.slice(0, decl)) {
            if (t.t === 'var') vars.push(t.v)
            else if (!(t.t === 'sym' && t.v === ',')) throw new TemplateError('bad variable declaration')
          }
          toks = toks.slice(decl + 1)
        }
        const e = parsePipeline(toks)
        const body = parseList(['else', 'end'])
        let els: Node[] = []
        if (body.end === 'else') els = parseList(['end']).nodes
        if (kw === 'range') nodes.push({k: 'range', e, vars, body: body.nodes, else: els})
        else nodes.push({k: kw, e, then: body.nodes, else: els})
        continue
      }
      nodes.push({k: 'out', e: parsePipeline(lexAction(a))})
    }
    if (ends.length) throw new TemplateError(`unexpected EOF`)
    return {nodes, end: ''}
  }
  const root = parseList([]).nodes

  return {
    execute(data: unknown): string {
      let out = ''
      const run = (nodes: Node[], dot: unknown, vars: Map<string, unknown>) => {
        for (const n of nodes) {
          switch (n.k) {
            case 'text':
              out += n.s
              break
            case 'out':
              out += str(evalExpr(n.e, dot, vars, undefined))
              break
            case 'if':
            case 'with': {
              const v = evalExpr(n.e, dot, vars, undefined)
              if (truthy(v)) run(n.then, n.k === 'with' ? v : dot, vars)
              else run(n.else, dot, vars)
              break
            }
            case 'range': {
              const v = evalExpr(n.e, dot, vars, undefined)
              const entries: Array<[unknown, unknown]> = Array.isArray(v)
                ? v.map((x, i) => [i, x])
                : v && typeof v === 'object'
                  ? Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]])
                  : []
              if (v !== null && v !== undefined && typeof v !== 'object') throw new TemplateError(`range can't iterate over ${str(v)}`)
              if (entries.length === 0) run(n.else, dot, vars)
              for (const [k, x] of entries) {
                const scope = new Map(vars)
                if (n.vars.length === 1) scope.set(n.vars[0]!, x)
                if (n.vars.length === 2) {
                  scope.set(n.vars[0]!, k)
                  scope.set(n.vars[1]!, x)
                }
                run(n.body, x, scope)
              }
              break
            }
          }
        }
      }
      const evalExpr = (e: Expr, dot: unknown, vars: Map<string, unknown>, piped: unknown[] | undefined): unknown => {
        switch (e.k) {
          case 'lit':
            return e.v
          case 'field': {
            let cur: unknown
            if (e.base === 'dot') cur = dot
            else if ('expr' in e.base) cur = evalExpr(e.base.expr, dot, vars, undefined)
            else if (e.base.var === '$') cur = data
            else if (vars.has(e.base.var)) cur = vars.get(e.base.var)
            else throw new TemplateError(`undefined variable: ${e.base.var}`)
            for (let i = 0; i < e.path.length; i++) {
              const f = e.path[i]!
              if (cur === null || cur === undefined) return undefined
              if (typeof cur !== 'object' || Array.isArray(cur)) throw new TemplateError(`can't evaluate field ${f} in type ${Array.isArray(cur) ? 'slice' : typeof cur}`)
              const o = cur as Record<string, unknown>
              // The top-level value is a struct in Go: an unknown field is an error.
              if (!(f in o) && cur === data && e.base === 'dot' && i === 0 && dot === data) {
                throw new TemplateError(`can't evaluate field ${f}`)
              }
              cur = o[f]
            }
            return cur
          }
          case 'call': {
            const args = e.args.map((a) => evalExpr(a, dot, vars, undefined))
            if (piped) args.push(...piped)
            try {
              return FUNCS[e.fn]!(...args)
            } catch (err) {
              if (err instanceof TemplateError) throw err
              throw new TemplateError(`error calling ${e.fn}: ${(err as Error).message}`)
            }
          }
          case 'pipe': {
            let v = evalExpr(e.cmds[0]!, dot, vars, undefined)
            for (const c of e.cmds.slice(1)) v = evalExpr(c, dot, vars, [v])
            return v
          }
        }
      }
      run(root, data, new Map([['$', data]]))
      return out
    },
  }
}

/** docker/nerdctl ParseTemplate: `json` is an alias of `{{json .}}`. */
export function parseFormat(format: string): Template {
  return parseTemplate(format === 'json' ? '{{json .}}' : format)
}
