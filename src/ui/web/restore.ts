/** The restore dialog: pick a destination, start the job, watch its progress. */
import { api, type RestoreJob } from './client.js';
import { button, clear, h } from './dom.js';
import { formatBytes, formatCount, plural } from './format.js';

const LOCAL = '__local__';

export function openRestoreDialog(snapshot: string, path: string, type: string): void {
  const dialog = document.getElementById('dialog') as HTMLDialogElement;
  let polling = 0;
  const stop = () => {
    if (polling) clearTimeout(polling);
    polling = 0;
  };
  const localOption = h('option', { value: LOCAL }, 'A local directory…');
  const select = h('select', { 'aria-label': 'Destination', 'data-testid': 'restore-destination' }, localOption);
  const localInput = h('input', { type: 'text', placeholder: '/absolute/path/to/directory', 'aria-label': 'Local directory', 'data-testid': 'restore-path' });
  const localLabel = h('label', null, 'Directory on this machine', localInput);
  const progress = h('progress', { max: 1, value: 0, class: 'hidden' });
  const progressText = h('div', { class: 'progress-text', 'data-testid': 'restore-status', 'aria-live': 'polite' });
  const warnings = h('ul', { class: 'warnings' });
  const start = button('Start restore', () => void begin(), { primary: true });
  const close = button('Close', () => dialog.close());
  select.addEventListener('change', () => localLabel.classList.toggle('hidden', select.value !== LOCAL));

  const show = (job: RestoreJob) => {
    progress.classList.remove('hidden');
    progress.max = Math.max(1, job.total_bytes);
    progress.value = job.state === 'done' ? progress.max : job.bytes;
    const counts = `${formatCount(job.files)} of ${formatCount(job.total_files)} files, ${formatBytes(job.bytes)} of ${formatBytes(job.total_bytes)}`;
    progressText.textContent =
      job.state === 'running'
        ? `Restoring… ${counts}`
        : job.state === 'done'
          ? `Restored ${plural(job.files, 'file')} (${formatBytes(job.bytes)}) to ${job.target}${job.errors ? `, ${plural(job.errors, 'error')}` : ''}.`
          : `Restore failed: ${job.error ?? 'unknown error'}`;
    clear(warnings, job.warnings.map((w) => h('li', null, `${w.path}: ${w.message}`)));
  };

  const poll = async (id: string) => {
    try {
      const job = await api.job(id);
      show(job);
      if (job.state === 'running' && dialog.open) polling = window.setTimeout(() => void poll(id), 400);
    } catch (err) {
      progressText.textContent = `Lost track of the restore: ${(err as Error).message}`;
    }
  };

  const begin = async () => {
    const destination = select.value === LOCAL ? localInput.value.trim() : select.value;
    if (!destination) {
      progressText.textContent = 'Choose a destination first.';
      return;
    }
    start.disabled = true;
    progressText.textContent = 'Starting…';
    try {
      const job = await api.restore(snapshot, path, destination);
      show(job);
      void poll(job.id);
    } catch (err) {
      start.disabled = false;
      progressText.textContent = (err as Error).message;
    }
  };

  clear(
    dialog,
    h(
      'div',
      { class: 'dialog-body' },
      h('h2', null, 'Restore'),
      h('div', null, `Restore ${type === 'directory' ? 'the directory' : 'the file'} `, h('code', null, path), ` from snapshot `, h('code', null, snapshot.slice(0, 8)), '.'),
      h('label', null, 'Destination', select),
      localLabel,
      progress,
      progressText,
      warnings,
    ),
    h('div', { class: 'dialog-actions' }, close, start),
  );
  dialog.addEventListener('close', stop, { once: true });
  dialog.showModal();
  void api.destinations().then(({ destinations }) => {
    for (const d of destinations) select.insertBefore(h('option', { value: d.name }, `${d.name} — ${d.location}`), localOption);
    if (destinations.length) {
      select.value = destinations[0].name;
      localLabel.classList.add('hidden');
    }
  }, () => undefined);
}
