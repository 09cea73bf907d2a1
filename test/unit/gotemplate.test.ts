import {describe, expect, it} from 'vitest'
import {parseFormat, parseTemplate, TemplateError} from '../../src/cli/gotemplate.js'

const row = {ID: '11c844f95e28', Name: 'mynet', Labels: 'a=1,b=2'}
const exec = (f: string, d: unknown = row) => parseFormat(f).execute(d)

describe('Go text/template subset', () => {
  it('fields and literal text; \\t and \\n typed in the shell stay as Go prints them', () => {
    expect(exec('{{.ID}} {{.Name}}')).toBe('11c844f95e28 mynet')
    expect(exec('{{.ID}}\\t{{.Name}}\\n')).toBe('11c844f95e28\\tmynet\\n')
    expect(exec('{{.ID}}\t{{.Name}}')).toBe('11c844f95e28\tmynet')
    expect(exec('plain')).toBe('plain')
  })
  it('json, with `json` as an alias of {{json .}}', () => {
    expect(exec('json')).toBe('{"ID":"11c844f95e28","Name":"mynet","Labels":"a=1,b=2"}')
    expect(exec('{{json .}}')).toBe(exec('json'))
    expect(exec('{{json .Labels}}')).toBe('"a=1,b=2"')
    expect(exec('{{json .L}}', {L: {x: '<&>'}})).toBe('{"x":"<&>"}')
    expect(exec('{{json .L}}', {L: null})).toBe('null')
  })
  it('index on maps and slices, nested fields', () => {
    const d = {Labels: {'com.example/k': 'v'}, IPAM: {Config: [{Subnet: '10.4.1.0/24'}]}}
    expect(exec('{{index .Labels "com.example/k"}}', d)).toBe('v')
    expect(exec('{{index .Labels "missing"}}', d)).toBe('<no value>')
    expect(exec('{{(index .IPAM.Config 0).Subnet}}', d)).toBe('10.4.1.0/24')
    expect(exec('{{.IPAM.Config}}', d)).toBe('[map[Subnet:10.4.1.0/24]]')
    expect(exec('{{.Labels}}', d)).toBe('map[com.example/k:v]')
  })
  it('if / else / range / with, and trim markers', () => {
    expect(exec('{{if .Labels}}yes{{else}}no{{end}}')).toBe('yes')
    expect(exec('{{if .Labels}}yes{{else}}no{{end}}', {Labels: ''})).toBe('no')
    expect(exec('{{range .L}}[{{.}}]{{end}}', {L: ['a', 'b']})).toBe('[a][b]')
    expect(exec('{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}', {M: {b: '2', a: '1'}})).toBe('a=1;b=2;')
    expect(exec('{{range .L}}x{{else}}empty{{end}}', {L: []})).toBe('empty')
    expect(exec('{{with .M}}{{.a}}{{end}}', {M: {a: 'A'}})).toBe('A')
    expect(exec('a  {{- .ID -}}  b')).toBe('a11c844f95e28b')
    expect(exec('{{$.Name}}')).toBe('mynet')
  })
  it('functions and pipelines', () => {
    expect(exec('{{.Name | upper}}')).toBe('MYNET')
    expect(exec('{{upper .Name}}-{{lower "AB"}}-{{len .Name}}')).toBe('MYNET-ab-5')
    expect(exec('{{join (split .Labels ",") " "}}')).toBe('a=1 b=2')
    expect(exec('{{printf "%s:%q:%d" .Name .ID 42}}')).toBe('mynet:"11c844f95e28":42')
    expect(exec('{{if eq .Name "mynet"}}same{{end}}')).toBe('same')
    expect(exec('{{truncate .ID 4}}')).toBe('11c8')
    expect(exec('{{"}}"}}')).toBe('}}')
  })
  it('errors are TemplateErrors', () => {
    expect(() => exec('{{.Nope}}')).toThrow(TemplateError)
    expect(() => exec('{{.Nope}}')).toThrow(/can't evaluate field Nope/)
    expect(() => parseTemplate('{{.ID')).toThrow(/unclosed action/)
    expect(() => parseTemplate('{{nosuch .ID}}')).toThrow(/function "nosuch" not defined/)
    expect(() => parseTemplate('{{if .ID}}x')).toThrow(/unexpected EOF/)
    expect(() => parseTemplate('{{end}}')).toThrow(/unexpected \{\{end\}\}/)
  })
})
