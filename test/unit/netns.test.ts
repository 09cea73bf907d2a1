/**
 * The task-netns rule of kernel/netns.ts, as far as it can be seen without
 * root: our own process shares the host's netns, a pid that does not exist
 * has none, and a process in a netns of its own (an unprivileged user+net
 * namespace, when the kernel allows one) is the only one entered.
 */
import {spawn} from 'node:child_process'
import {readlinkSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {GONE_NETNS, interfacesOf, isProcNetnsPath, netnsForDel, netnsInode, procNetnsPath, taskNetns, taskNetnsState} from '../../src/kernel/netns.js'

const NO_PID = 2 ** 22 + 12345 // above pid_max's ceiling: never a process

describe('task netns', () => {
  it('recognises the netns files of processes, not named ones', () => {
    expect(procNetnsPath(42)).toBe('/proc/42/ns/net')
    expect(isProcNetnsPath('/proc/42/ns/net')).toBe(true)
    expect(isProcNetnsPath('/proc/42/task/43/ns/net')).toBe(true)
    expect(isProcNetnsPath('/var/run/netns/x')).toBe(false)
    expect(isProcNetnsPath('/proc/self/ns/net')).toBe(false)
    expect(isProcNetnsPath('/proc/42/ns/net/../../1/ns/net')).toBe(false)
  })

  it('never gives the host netns (ours) nor that of a pid that is gone', () => {
    expect(netnsInode('/proc/self/ns/net')).toBe(readlinkSync('/proc/self/ns/net'))
    expect(taskNetnsState(process.pid)).toBe('host')
    expect(taskNetns(process.pid)).toBeUndefined()
    expect(taskNetnsState(NO_PID)).toBe('gone')
    expect(taskNetns(NO_PID)).toBeUndefined()
    expect(taskNetnsState(0)).toBe('gone')
    expect(taskNetnsState(-1)).toBe('gone')
    expect(taskNetns(undefined)).toBeUndefined()
    expect(netnsInode(procNetnsPath(NO_PID))).toBeUndefined()
  })

  it('hands DEL GONE_NETNS unless the recorded netns is the live task netns', () => {
    expect(GONE_NETNS).toBe('/proc/0/ns/net')
    expect(netnsForDel(procNetnsPath(process.pid), process.pid)).toBe(GONE_NETNS)
    expect(netnsForDel(procNetnsPath(NO_PID), NO_PID)).toBe(GONE_NETNS)
    expect(netnsForDel(undefined, undefined)).toBe(GONE_NETNS)
    expect(netnsForDel('/var/run/netns/x', undefined)).toBe(GONE_NETNS)
  })

  it('lists the interfaces of a process netns, none for a gone pid', () => {
    expect(interfacesOf(process.pid)).toContain('lo')
    expect(interfacesOf(NO_PID)).toEqual([])
  })

  it('enters the netns of a live process that has its own', async () => {
    const child = spawn('unshare', ['--user', '--map-root-user', '--net', 'sleep', '30'], {stdio: 'ignore'})
    try {
      const pid = child.pid!
      // unshare replaces itself with sleep once the namespaces exist
      let state = taskNetnsState(pid)
      for (let i = 0; i < 250 && state === 'host'; i++) {
        await new Promise((r) => setTimeout(r, 20))
        state = taskNetnsState(pid)
      }
      // Debian 12 allows unprivileged user namespaces; where they are not allowed this fails, as it should
      expect(state).toBe('own')
      expect(taskNetns(pid)).toBe(procNetnsPath(pid))
      expect(netnsForDel(procNetnsPath(pid), pid)).toBe(procNetnsPath(pid))
      expect(netnsForDel('/proc/1/ns/net', pid)).toBe(GONE_NETNS)
      expect(interfacesOf(pid)).toEqual(['lo'])
    } finally {
      child.kill('SIGKILL')
    }
  })
})
