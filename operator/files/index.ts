/** Files: uploads and prediction outputs, in a directory or an S3-compatible store. See docs/files.md. */
export { type FileBackend, FileTooLargeError, Metered, type Stored } from './backend.ts';
export { DirectoryBackend } from './directory.ts';
export { S3Backend, type S3Settings } from './s3.ts';
export {
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_UPLOAD_TTL_MS,
  type FileObject,
  FileService,
  type FileServiceOptions,
  type NewFile,
} from './service.ts';
export { FileUrls, type Verdict } from './urls.ts';
