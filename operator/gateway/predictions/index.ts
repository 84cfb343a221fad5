/** The gateway's prediction endpoints: HTTP over the predictions module (operator/predictions). */
export { predictionRoutes } from './routes.ts';
export { type PredictionService, type PredictionServiceOptions, predictionService } from './service.ts';
export { StreamTokens } from './stream-token.ts';
