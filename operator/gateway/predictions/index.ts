/** The gateway's prediction endpoints (HTTP) over the predictions module. */
export { predictionRoutes } from './routes.ts';
export { type PredictionService, type PredictionServiceOptions, predictionService } from './service.ts';
