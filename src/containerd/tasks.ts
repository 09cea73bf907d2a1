import type {TaskStatus} from './client.js'

/** A live task: RUNNING or PAUSED (it has a process, so a netns); every other state has none, or is in transition. */
export function isLive(task: {status: TaskStatus} | undefined): boolean {
  return task !== undefined && (task.status === 'RUNNING' || task.status === 'PAUSED')
}
