// The control panel's words, in English and French (the seed's language; OVH's panel speaks both).
// The API's messages (errors, agent sentences) are shown as the API answers them, in English.
import type { PhaseName } from '../report/phases.ts';

export const languages = ['en', 'fr'] as const;
export type Language = (typeof languages)[number];

const en = {
  lang: 'en',
  appName: 'byoi control panel',
  skipToContent: 'Skip to content',
  language: 'Language',
  signIn: 'Sign in',
  signOut: 'Sign out',
  signedInAs: (name: string) => `Signed in as ${name}`,
  accountName: 'Account name',
  password: 'Password',
  wrongPassword: 'Wrong account name or password.',
  tooManyAttempts: 'Too many failed sign-ins: wait a few minutes and try again.',
  servers: 'Your servers',
  noServers: 'No server is attached to your account.',
  server: 'Server',
  state: 'State',
  idle: 'Idle',
  deploying: 'Deploying',
  done: 'Done',
  error: 'Error',
  deployingPhase: (phase: PhaseName, percent: number | null) =>
    `Deploying: ${phase}${percent === null ? '' : ` ${percent} %`}`,
  diskGroups: 'Disk groups',
  diskGroupsUnknown: 'Unknown: the server has not reported its disk groups yet.',
  currentDeployment: 'Current deployment',
  noDeployment: 'No deployment on this server.',
  follow: 'Follow the deployment',
  install: 'Install from a custom image',
  eraseWarning: "Warning: the installation erases all the data on the server's disk.",
  image: 'Image',
  url: 'Image URL',
  type: 'Image type',
  checkSum: 'Checksum',
  checkSumType: 'Checksum type',
  none: 'None',
  description: "Description (the image's name)",
  diskGroupId: 'Disk group',
  diskGroupDefault: '1 (default)',
  diskGroupAutomatic: '0 (automatic)',
  httpHeaders: 'HTTP headers (sent with the image download)',
  headerName: (n: number) => `Header ${n} name`,
  headerValue: (n: number) => `Header ${n} value`,
  configDrive: 'ConfigDrive (cloud-init)',
  enableConfigDrive: 'Enable ConfigDrive',
  hostname: 'Hostname',
  sshKey: 'SSH public key(s), one a line',
  userData: 'User data (a script or #cloud-config)',
  userDataFile: 'or user data from a file',
  metadata: 'Metadata',
  metadataKey: (n: number) => `Metadata ${n} key`,
  metadataValue: (n: number) => `Metadata ${n} value`,
  addRow: 'Add a row',
  secretsNotShown: 'Header values and user data are never shown back: give them again if you change the form.',
  review: 'Review the installation',
  confirmTitle: 'Confirm the installation',
  confirmWhat: (server: string) =>
    `${server} will boot on the deployment agent, which downloads the image below, checks it and writes it onto the chosen disk: everything the disk holds now is erased. The server then reboots on its new system.`,
  hidden: 'hidden',
  bytesHidden: (bytes: number) => `${bytes} bytes (hidden)`,
  sshKeys: (n: number) => `${n} key(s)`,
  disabled: 'Disabled',
  confirmInstall: 'Erase the disk and install',
  edit: 'Change the form',
  deployment: 'Deployment',
  phase: 'Phase',
  progress: 'Progress',
  rate: 'Rate',
  eta: 'Time left',
  steps: 'Steps',
  message: 'Message',
  deleteInstall: 'Delete the installation',
  deleteWhat: (server: string) =>
    `This erases the deployment status of ${server}, stops its agent and puts the server in rescue mode.`,
  confirmDelete: 'Delete',
  cancel: 'Cancel',
  back: 'Back to the server',
  allServers: 'All servers',
  notFound: 'This page does not exist, or the server is not yours.',
  badForm: 'This form did not come from this panel or has expired: reload the page and try again.',
  tooBig: 'The form is too large.',
  failure: 'Something went wrong: try again later.',
  unknown: 'unknown',
  cancelled: 'Cancelled',
  detail: 'Detail',
  diskGroupsReported: (at: string) => `As the server's agent reported them on ${at}.`,
  diskGroupsDeclared: "As the lab declares them (the server's agent has not reported its disks yet).",
  disks: 'disks',
};

export type Messages = typeof en;

const fr: Messages = {
  lang: 'fr',
  appName: 'Espace client byoi',
  skipToContent: 'Aller au contenu',
  language: 'Langue',
  signIn: 'Se connecter',
  signOut: 'Se déconnecter',
  signedInAs: (name) => `Connecté en tant que ${name}`,
  accountName: 'Identifiant',
  password: 'Mot de passe',
  wrongPassword: 'Identifiant ou mot de passe incorrect.',
  tooManyAttempts: 'Trop de connexions échouées : attendez quelques minutes et réessayez.',
  servers: 'Vos serveurs',
  noServers: "Aucun serveur n'est rattaché à votre compte.",
  server: 'Serveur',
  state: 'État',
  idle: 'Inactif',
  deploying: 'Déploiement en cours',
  done: 'Terminé',
  error: 'Erreur',
  deployingPhase: (phase, percent) => `Déploiement : ${phase}${percent === null ? '' : ` ${percent} %`}`,
  diskGroups: 'Groupes de disques',
  diskGroupsUnknown: "Inconnus : le serveur n'a pas encore indiqué ses groupes de disques.",
  currentDeployment: 'Déploiement en cours ou dernier déploiement',
  noDeployment: 'Aucun déploiement sur ce serveur.',
  follow: 'Suivre le déploiement',
  install: 'Installer depuis une image personnalisée',
  eraseWarning: "Attention : l'installation efface toutes les données du disque du serveur.",
  image: 'Image',
  url: "URL de l'image",
  type: "Type d'image",
  checkSum: 'Somme de contrôle',
  checkSumType: 'Type de somme de contrôle',
  none: 'Aucune',
  description: "Description (nom de l'image)",
  diskGroupId: 'Groupe de disques',
  diskGroupDefault: '1 (par défaut)',
  diskGroupAutomatic: '0 (automatique)',
  httpHeaders: "En-têtes HTTP (envoyés avec le téléchargement de l'image)",
  headerName: (n) => `Nom de l'en-tête ${n}`,
  headerValue: (n) => `Valeur de l'en-tête ${n}`,
  configDrive: 'ConfigDrive (cloud-init)',
  enableConfigDrive: 'Activer ConfigDrive',
  hostname: "Nom d'hôte",
  sshKey: 'Clé(s) SSH publique(s), une par ligne',
  userData: 'Données utilisateur (un script ou #cloud-config)',
  userDataFile: 'ou données utilisateur depuis un fichier',
  metadata: 'Métadonnées',
  metadataKey: (n) => `Clé de la métadonnée ${n}`,
  metadataValue: (n) => `Valeur de la métadonnée ${n}`,
  addRow: 'Ajouter une ligne',
  secretsNotShown:
    'Les valeurs des en-têtes et les données utilisateur ne sont jamais réaffichées : saisissez-les de nouveau si vous modifiez le formulaire.',
  review: "Vérifier l'installation",
  confirmTitle: "Confirmer l'installation",
  confirmWhat: (server) =>
    `${server} va démarrer sur l'agent de déploiement, qui télécharge l'image ci-dessous, la vérifie et l'écrit sur le disque choisi : tout ce que contient ce disque sera effacé. Le serveur redémarre ensuite sur son nouveau système.`,
  hidden: 'masquée',
  bytesHidden: (bytes) => `${bytes} octets (masqués)`,
  sshKeys: (n) => `${n} clé(s)`,
  disabled: 'Désactivé',
  confirmInstall: 'Effacer le disque et installer',
  edit: 'Modifier le formulaire',
  deployment: 'Déploiement',
  phase: 'Phase',
  progress: 'Progression',
  rate: 'Débit',
  eta: 'Temps restant',
  steps: 'Étapes',
  message: 'Message',
  deleteInstall: "Supprimer l'installation",
  deleteWhat: (server) =>
    `Cela efface l'état du déploiement de ${server}, arrête son agent et met le serveur en mode rescue.`,
  confirmDelete: 'Supprimer',
  cancel: 'Annuler',
  back: 'Retour au serveur',
  allServers: 'Tous les serveurs',
  notFound: "Cette page n'existe pas, ou ce serveur n'est pas le vôtre.",
  badForm: 'Ce formulaire ne vient pas de cet espace ou a expiré : rechargez la page et réessayez.',
  tooBig: 'Le formulaire est trop volumineux.',
  failure: 'Une erreur est survenue : réessayez plus tard.',
  unknown: 'inconnu',
  cancelled: 'Annulé',
  detail: 'Détail',
  diskGroupsReported: (at) => `Tels que l'agent du serveur les a indiqués le ${at}.`,
  diskGroupsDeclared: "Tels que le laboratoire les déclare (l'agent du serveur n'a pas encore indiqué ses disques).",
  disks: 'disques',
};

export const dictionaries: Readonly<Record<Language, Messages>> = { en, fr };

const isLanguage = (value: unknown): value is Language => languages.includes(value as Language);

/** The cookie's choice, else the first of Accept-Language's languages (by weight) the panel speaks. */
export function chooseLanguage(cookie: string | undefined, acceptLanguage: string | undefined): Language {
  if (isLanguage(cookie)) return cookie;
  const ranked = (acceptLanguage ?? '')
    .slice(0, 512)
    .split(',')
    .map((entry, order) => {
      const [tag, ...params] = entry.trim().split(';');
      const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
      return { base: (tag ?? '').trim().toLowerCase().split('-')[0], q: q === undefined ? 1 : Number(q), order };
    })
    .filter((e) => e.q > 0)
    .sort((a, b) => b.q - a.q || a.order - b.order);
  return ranked.map((e) => e.base).find(isLanguage) ?? 'en';
}

/** Bytes per second as people read them. */
export function formatRate(bytesPerSecond: number): string {
  const units = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'];
  let value = bytesPerSecond;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}
