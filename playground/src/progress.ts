/**
 * Live progress of one step. The one place that decides how the page learns about a step's
 * changes: today it polls `GET /tasks/{task_id}/status?step=…` every 2 s; when the events
 * stream (`GET /tasks/{task_id}/events`, SPEC §11) exists, `watchStep` changes to read it and
 * nothing else in the page does.
 */
import type { Api, StatusResponse, Step } from './api';

export const POLL_INTERVAL_MS = 2000;

/** Calls `onUpdate` with every status read until the step is final; resolves with the final one. */
export type StepWatcher = (
  api: Api,
  taskId: string,
  step: Step,
  onUpdate: (status: StatusResponse) => void,
  signal: AbortSignal,
) => Promise<StatusResponse>;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });
}

const pollStatus: StepWatcher = async (api, taskId, step, onUpdate, signal) => {
  for (;;) {
    const s = await api.status(taskId, step, signal);
    onUpdate(s);
    if (s.status === 'complete' || s.status === 'failed') return s;
    await sleep(POLL_INTERVAL_MS, signal);
  }
};

export const watchStep: StepWatcher = pollStatus;
