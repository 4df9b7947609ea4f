// Who reviews, with which token: asked once in a dialog, the token kept in this tab's
// sessionStorage (gone when the tab closes), the reviewer's name in localStorage.

const TOKEN = 'truthloop.token';
const SIGNED_IN = 'truthloop.signedIn';
const REVIEWER = 'truthloop.reviewer';

/** {reviewer, token} once signed in this session (token '' for a service without one). */
export function credentials() {
  if (sessionStorage.getItem(SIGNED_IN) !== '1') return null;
  return { reviewer: localStorage.getItem(REVIEWER) || '', token: sessionStorage.getItem(TOKEN) || '' };
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(SIGNED_IN);
}

/** Ask for the reviewer's name and the token; null when cancelled. */
export function signIn(problem) {
  const dialog = document.getElementById('token-dialog');
  const form = dialog.querySelector('form');
  const error = dialog.querySelector('[data-testid=token-error]');
  form.reviewer.value = localStorage.getItem(REVIEWER) || '';
  form.token.value = '';
  error.hidden = !problem;
  error.textContent = problem || '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'ok') return resolve(null);
      localStorage.setItem(REVIEWER, form.reviewer.value.trim());
      sessionStorage.setItem(TOKEN, form.token.value.trim());
      sessionStorage.setItem(SIGNED_IN, '1');
      resolve(credentials());
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    (form.reviewer.value ? form.token : form.reviewer).focus();
  });
}
